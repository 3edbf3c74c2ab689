"""Static sparsity: random and magnitude initial masks at the layer targets, fixed afterwards."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import hand_context

from spfde_core.cli import load_config
from spfde_core.sparsity.static import Static, StaticConfig
from spfde_core.train.run import run_training


def _ctx(init: str, seed: int = 0):
    weights = {f"l{i}": torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(i)) for i in range(2)}
    cfg = StaticConfig(name="static_random", init=init)
    ctx = hand_context(weights, {"l0": 0.75, "l1": 0.5}, cfg)
    ctx.state.cfg.run.seed = seed
    return ctx, Static(cfg)


def test_random_init_hits_each_layer_target_and_depends_only_on_the_seed() -> None:
    ctx, method = _ctx("random")
    method.init_masks(ctx)
    counts = [int(layer.mask.sum()) for layer in ctx.masks]
    assert counts == [round(0.25 * 288), round(0.5 * 288)]
    again, _ = _ctx("random")
    method.init_masks(again)
    other, _ = _ctx("random", seed=1)
    method.init_masks(other)
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(ctx.masks, again.masks, strict=True))
    assert not torch.equal(ctx.masks.layers[0].mask, other.masks.layers[0].mask)


def test_magnitude_init_keeps_the_largest_weights() -> None:
    ctx, method = _ctx("magnitude")
    method.init_masks(ctx)
    layer = ctx.masks.layers[0]
    k = round(0.25 * 288)
    threshold = layer.weight.detach().abs().flatten().sort(descending=True).values[k - 1]
    assert torch.all(layer.weight.detach().abs()[layer.mask] >= threshold)
    assert int(layer.mask.sum()) == k


@pytest.mark.smoke
def test_static_erk_run_uses_erk_layer_densities(smoke_overrides) -> None:
    cfg = load_config([*smoke_overrides, "sparsity=static_erk", "sparsity.layers=all", "train.epochs=1"])
    record = run_training(cfg)
    layers = {row["name"]: row for row in record["sparsity"]["layers"]}
    densities = {name: row["active"] / row["size"] for name, row in layers.items()}
    assert len(set(round(d, 3) for d in densities.values())) > 2  # non-uniform
    total = sum(row["active"] for row in layers.values()) / sum(row["size"] for row in layers.values())
    assert total == pytest.approx(0.1, abs=0.005)
