"""SET: magnitude drop, random regrowth at inactive positions, epoch schedule, smoke-run invariants."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import StepInvariants, hand_context

from spfde_core.cli import load_config
from spfde_core.sparsity.set import SET, SETConfig, set_update
from spfde_core.train.run import run_training


def _ctx(regrow_dropped: bool):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 5, 1, 1, generator=g)  # 20 weights, target 0.5: 10 active
    cfg = SETConfig(target=0.5, regrow_dropped=regrow_dropped)
    ctx = hand_context({"conv": w}, {"conv": 0.5}, cfg, epochs=10)
    layer = ctx.masks.layers[0]
    ctx.state.optimizer = torch.optim.SGD([layer.weight], lr=0.1, momentum=0.9)
    SET(cfg).init_masks(ctx)
    with torch.no_grad():
        layer.weight.mul_(layer.mask)
    return ctx, layer


@pytest.mark.parametrize("regrow_dropped", [True, False])
def test_drops_smallest_and_regrows_the_same_count_at_inactive_positions(regrow_dropped) -> None:
    ctx, layer = _ctx(regrow_dropped)
    regrew_a_dropped_one = False
    for key in range(12):  # 12 independent draws: the exclusion rule is checked, not luck
        old = layer.mask.clone()
        magnitude = layer.weight.detach().abs()
        set_update(ctx, 0.3, regrow_dropped, ("test", key))
        new = layer.mask
        # int(0.3 * 10) = 3 smallest-|w| active weights dropped, everything larger kept.
        order = torch.sort(torch.where(old, magnitude, torch.inf).flatten(), stable=True).indices
        dropped = torch.zeros(20, dtype=torch.bool)
        dropped[order[:3]] = True
        dropped = dropped.view_as(old)
        assert torch.equal(new & old & ~dropped, old & ~dropped)
        assert int(new.sum()) == 10
        regrown = new & ~(old & ~dropped)
        assert int(regrown.sum()) == 3
        assert torch.all(layer.weight[regrown] == 0)  # regrown weights start at zero
        if regrow_dropped:
            regrew_a_dropped_one |= bool((regrown & dropped).any())
        else:
            assert not (regrown & dropped).any()  # only previously inactive positions
        with torch.no_grad():  # pretend training moved the weights
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(key)))
            layer.weight.mul_(layer.mask)
    if regrow_dropped:  # P(never, 12 draws) = (120/286)^12 < 1e-4 under uniform regrowth
        assert regrew_a_dropped_one


def test_update_epochs_skip_epoch_0_and_stop_at_end_fraction() -> None:
    every = SET(SETConfig())
    assert [e for e in range(10) if every.is_update_epoch(e, 10)] == list(range(1, 10))
    half = SET(SETConfig(end_fraction=0.5))
    assert [e for e in range(10) if half.is_update_epoch(e, 10)] == [1, 2, 3, 4]
    second = SET(SETConfig(update_every_epochs=2))
    assert [e for e in range(10) if second.is_update_epoch(e, 10)] == [2, 4, 6, 8]


def test_update_is_reproducible_from_the_seed() -> None:
    masks = []
    for _ in range(2):
        ctx, layer = _ctx(True)
        ctx.state.epoch = 1
        assert SET(SETConfig(target=0.5)).on_epoch_start(ctx)
        masks.append(layer.mask.clone())
    assert torch.equal(masks[0], masks[1])


@pytest.mark.smoke
def test_set_smoke_run_keeps_invariants(smoke_overrides) -> None:
    checker = StepInvariants()
    overrides = ["sparsity=set", "train.epochs=3", "train.max_batches_per_epoch=4"]
    record = run_training(load_config([*smoke_overrides, *overrides]), extra_callbacks=[checker])
    assert checker.steps == 12
    block = record["sparsity"]
    assert block["method"] == "set" and block["num_mask_updates"] == 2  # epochs 1 and 2
    assert block["sparse_layers_density"] == pytest.approx(0.1, abs=0.002)
    for layer in block["layers"]:
        assert abs(layer["active"] - round((1 - layer["target_sparsity"]) * layer["size"])) <= 1
    assert block["exploration_rate"] > 0.1
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])
