"""Every sparsity scheme trains end to end: exact density, zeros kept after every step, structure kept."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import StepInvariants

from spfde_core.cli import load_config
from spfde_core.sparsity.schemes import get_scheme
from spfde_core.sparsity.schemes.pattern import PatternScheme
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke

CASES = [
    ("static_random", "unstructured", 0.9),
    ("static_random", "block", 0.9),
    ("static_random", "channel", 0.75),
    ("static_random", "nm", 0.5),
    ("static_random", "pattern", 0.9),
    ("mest_ems", "unstructured", 0.9),
    ("mest_ems", "block", 0.9),
    ("mest_ems", "channel", 0.75),
    ("mest_ems", "pattern", 0.9),
]


class StructureProbe:
    """At each epoch end, every sparse layer's mask must be a valid mask of the scheme at its target."""

    def __init__(self, scheme: str) -> None:
        self.scheme = get_scheme(scheme)
        self.checked = 0

    def on_epoch_end(self, state) -> None:
        for module in state.model.modules():
            mask = getattr(module, "weight_mask", None)
            if mask is None:
                continue
            if isinstance(self.scheme, PatternScheme):
                kernels = mask.flatten(2).sum(-1)
                assert set(kernels.unique().tolist()) <= {0, 4}, "pattern kernels hold 4 weights or none"
                per_filter = (kernels > 0).sum(1)
                assert per_filter.min() == per_filter.max(), "filter balance: same kernel count per filter"
            elif self.scheme.name == "block":
                blocks = mask.flatten(1).view(mask.shape[0] // 4, 4, -1).sum(1)
                assert set(blocks.unique().tolist()) <= {0, 4}, "4x1 blocks are all on or all off"
            elif self.scheme.name == "channel":
                filters = mask.flatten(1).sum(1)
                assert set(filters.unique().tolist()) <= {0, mask[0].numel()}, "whole filters on or off"
            elif self.scheme.name == "nm":
                groups = mask.permute(0, 2, 3, 1).reshape(-1, 4).sum(1)
                assert torch.all(groups == 2), "2 of every 4 along input channels"
            self.checked += 1


@pytest.mark.parametrize(("method", "scheme", "target"), CASES)
def test_scheme_trains_with_its_structure(smoke_overrides, method: str, scheme: str, target: float) -> None:
    overrides = [*smoke_overrides, f"sparsity={method}", f"sparsity.scheme={scheme}", f"sparsity.target={target}"]
    if method == "mest_ems":
        overrides.append("sparsity.update_every_epochs=1")
    invariants, structure = StepInvariants(), StructureProbe(scheme)
    record = run_training(load_config(overrides), extra_callbacks=[invariants, structure])
    assert invariants.steps == 2 * 16 and structure.checked > 0
    block = record["sparsity"]
    assert block["config"]["scheme"] == scheme
    expected = 1 - target if method == "static_random" else None
    if expected is not None:
        assert block["sparse_layers_density"] == pytest.approx(expected, abs=0.03)
