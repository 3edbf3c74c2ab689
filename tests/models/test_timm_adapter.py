"""timm models as block models (models/timm_adapter.py): the split is timm's forward, freezing and sparsity work."""

from __future__ import annotations

import json

import pytest
import torch

from spfde_core.cli import main
from spfde_core.config import ConfigError, validate
from spfde_core.models import build_model

timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install -e '.[timm]'")


@pytest.mark.parametrize("name", ["resnet10t", "test_convnext"])
def test_blocks_reproduce_timm_and_freeze(name: str) -> None:
    model = build_model(f"timm-{name}", 10)  # the build itself checks the split against timm's forward
    assert model.block_names[0] == "stem" and model.block_names[-1] == "head" and len(model.block_names) >= 4
    layers = model.prunable_layers()
    assert len({id(layer.module) for layer in layers}) == len(layers)  # each weight once, under one block
    assert len({id(p) for p in model.parameters()}) == sum(1 for _ in model.parameters())
    dense = [layer.name for layer in layers if not layer.sparse_by_default]
    assert len(dense) == 2 and dense[0].startswith("stem.") and dense[1].startswith("head.")
    # Freezing: the first two blocks get no gradient and stay bit-identical through a step.
    model.num_frozen_blocks = 2
    model.train()
    before = {k: v.clone() for k, v in model.blocks[:2].state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    assert all(p.grad is None for p in model.blocks[:2].parameters())
    assert all(p.grad is not None for p in model.blocks[-1].parameters())
    assert all(torch.equal(before[k], v) for k, v in model.blocks[:2].state_dict().items())


def test_unsupported_and_unknown_timm_models_are_refused(smoke_cfg) -> None:
    with pytest.raises(ValueError, match="supports those two"):
        build_model("timm-test_vit", 10)
    smoke_cfg.model.name, smoke_cfg.model.width = "timm-no_such_net", None
    with pytest.raises(ConfigError, match="model.name: timm has no model 'no_such_net'"):
        validate(smoke_cfg)


@pytest.mark.smoke
def test_smoke_run_with_sparsity_and_freezing(smoke_overrides, tmp_path) -> None:
    args = [
        "train",
        *smoke_overrides,
        "model.name=timm-test_resnet",
        "model.width=null",
        "sparsity=mest_ems",
        "sparsity.target=0.8",
        "freezing=spfde_progressive",
        "freezing.target_reduction=0.1",
        "train.epochs=3",
    ]
    assert main(args) == 0
    record = json.loads((tmp_path / "runs" / "test" / "smoke" / "seed0" / "metrics.json").read_text())
    assert record["config"]["model"]["name"] == "timm-test_resnet"
    assert record["cost"]["training_flops"]["ratio_to_dense"] < 0.5
    text = json.dumps(record)
    assert '"frozen' in text and "density" in text
