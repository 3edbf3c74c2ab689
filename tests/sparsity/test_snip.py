"""SNIP: the kept weights are the global top-k of |g*w|, exact counts, layerwise allocation, a smoke run."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from spfde_core.cli import load_config
from spfde_core.data.types import Batch
from spfde_core.models import build_model
from spfde_core.ops.fused_update import MaskedSGD
from spfde_core.sparsity.engine import SparseTraining
from spfde_core.sparsity.snip import SNIP, SNIPConfig
from spfde_core.train.run import run_training


class ListLoader:
    """A loader over fixed batches (iterating it never changes anything)."""

    def __init__(self, batches: list[Batch], num_classes: int = 10) -> None:
        self.batches, self.num_classes = batches, num_classes

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def fixed_batch(n: int = 16, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return Batch(images, labels, torch.arange(n))


def snip_setup(**cfg_fields):
    torch.manual_seed(0)
    model = build_model("resnet20", 10, width=0.25)
    batch = fixed_batch()
    reference = copy.deepcopy(model)  # same weights and BN state, scored independently below
    cfg = OmegaConf.structured(SNIPConfig(**cfg_fields))
    optimizer = MaskedSGD(model.parameters(), lr=0.1, momentum=0.9)
    state = SimpleNamespace(
        model=model,
        train_loader=ListLoader([batch, fixed_batch(seed=1)]),
        optimizer=optimizer,
        epoch=0,
        step=0,
        cost_events=[],
    )
    sparse = SparseTraining(SNIP(cfg), cfg, state)
    return sparse, state, reference, batch


def reference_keep(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Top-k of the concatenation, ties to the lower index, via numpy lexsort (independent of the code)."""
    flat = torch.cat([s.flatten() for s in scores]).numpy()
    order = np.lexsort((np.arange(flat.size), -flat))  # primary: score descending; then index
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:k]] = True
    parts = np.split(keep, np.cumsum([s.numel() for s in scores])[:-1])
    return [torch.from_numpy(p).view(s.shape) for p, s in zip(parts, scores, strict=True)]


def test_snip_keeps_exactly_the_global_top_k_of_g_times_w() -> None:
    sparse, state, reference, batch = snip_setup(target=0.9)
    bn_before = {k: v.clone() for k, v in state.model.state_dict().items() if "running" in k}
    sparse.on_train_start(state)  # init_masks + the engine's exact-count check

    # Independent reference: plain autograd on an identical copy of the dense network, BN in train mode.
    ref_modules = {layer.name: layer.module for layer in reference.prunable_layers()}
    weights = [ref_modules[layer.name].weight for layer in sparse.masks]
    reference.train()
    F.cross_entropy(reference(batch.images), batch.labels).backward()
    scores = [(w.grad * w).abs().detach() for w in weights]
    k = sum(round(0.1 * w.numel()) for w in weights)
    expected = reference_keep(scores, k)

    for layer, keep in zip(sparse.masks, expected, strict=True):
        assert torch.equal(layer.mask, keep), layer.name
    counts = sparse.masks.active_counts()
    assert sum(counts.values()) == k
    densities = set(round(d, 6) for d in sparse.masks.densities().values())
    assert len(densities) > 3, "global allocation gives non-uniform per-layer densities"
    for layer in sparse.masks:
        assert sparse.scheme.active_count(layer.weight.shape, layer.target) == counts[layer.name]
        assert torch.all(layer.weight[~layer.mask] == 0)
    # Scoring leaves no trace: BN running statistics restored, no grads, train mode kept.
    for key, value in bn_before.items():
        assert torch.equal(state.model.state_dict()[key], value), key
    assert all(p.grad is None for p in state.model.parameters())
    cost = sparse.method.choices()["scoring_cost"]
    assert cost["scoring_samples"] == 16 and cost["forward_passes"] == 1 and cost["backward_passes"] == 1


def test_snip_layerwise_keeps_every_layer_at_its_target_and_global_rejects_structured() -> None:
    sparse, state, _, _ = snip_setup(target=0.8, allocation="layerwise")
    sparse.on_train_start(state)
    for layer in sparse.masks:
        assert layer.target == 0.8
        assert int(layer.mask.sum()) == round(0.2 * layer.mask.numel())
    sparse, state, _, _ = snip_setup(target=0.5, allocation="layerwise", scheme="channel")
    sparse.on_train_start(state)  # structured schemes work layer-wise (exact counts checked by the engine)
    with pytest.raises(ValueError, match="sparsity.scheme"):
        snip_setup(target=0.5, scheme="channel")


class MaskWatch:
    """After every step: pruned weights are zero and the masks are the initial ones."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_train_start(self, state) -> None:
        self.layers = {n: m for n, m in state.model.named_modules() if hasattr(m, "weight_mask")}
        self.initial = {n: m.weight_mask.clone() for n, m in self.layers.items()}
        assert self.initial and all(not bool(m.all()) for m in self.initial.values())

    def after_step(self, state, step) -> None:
        self.steps += 1
        for name, module in self.layers.items():
            assert torch.equal(module.weight_mask, self.initial[name]), name
            assert torch.all(module.weight[~module.weight_mask] == 0), name


def smoke_run(overrides: list[str], method: str) -> tuple[dict, MaskWatch]:
    """Two short epochs (8 batches each) of the smoke profile with ``method`` at 90% sparsity."""
    watch = MaskWatch()
    extra = [f"sparsity={method}", "sparsity.target=0.9", "train.epochs=2", "train.max_batches_per_epoch=8"]
    cfg = load_config([*overrides, *extra])
    record = run_training(cfg, extra_callbacks=[watch])
    return record, watch


@pytest.mark.smoke
def test_snip_smoke_run_keeps_a_fixed_mask(smoke_overrides) -> None:
    record, watch = smoke_run(smoke_overrides, "snip")
    block = record["sparsity"]
    assert block["method"] == "snip" and watch.steps == 2 * 8
    assert block["num_mask_updates"] == 0
    assert block["exploration_rate"] == pytest.approx(block["sparse_layers_density"], abs=1e-12)
    assert block["sparse_layers_density"] == pytest.approx(0.1, abs=1e-3)
    assert len({round(layer["target_sparsity"], 6) for layer in block["layers"]}) > 1
    assert block["choices"]["scoring_cost"]["scoring_samples"] == 32  # one batch of the training size
