"""SparCL TDM: the script's bounds, the per-task restart of the schedule, masked weights stay zero."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import hand_context

from spfde_core.sparsity.sparcl_tdm import SparCLTDM, SparCLTDMConfig, bounds


def test_default_bounds_are_the_shipped_75_percent_script() -> None:
    lower, upper = bounds(0.75, None, None)
    assert lower == pytest.approx([0.75, 0.76, 0.75]) and upper == pytest.approx([0.74, 0.75, 0.75])


def test_schedule_restarts_with_every_task_and_follows_the_phases() -> None:
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))  # 576 weights
    cfg = SparCLTDMConfig(target=0.75, phase_epochs=[2, 3], update_every_epochs=2)
    ctx = hand_context({"conv": w}, {"conv": 0.75}, cfg, epochs=8)
    tdm = SparCLTDM(cfg, task_epochs=4)  # 2 tasks of 4 epochs: updates at epochs 0, 2 | 4, 6
    tdm.init_masks(ctx)
    layer = ctx.masks.layers[0]
    assert int(layer.mask.sum()) == 144  # top 25 % of the init
    density = {}
    for epoch in range(8):
        ctx.state.epoch = epoch
        if tdm.on_epoch_start(ctx):
            density[epoch] = int(layer.mask.sum())
    assert sorted(density) == [0, 2, 4, 6]
    # within-task epoch 0: grow to 0.74 (150 of 576); epoch 2 (phase 1): prune to 0.76, grow to 0.75 (144)
    assert density == {0: round(0.26 * 576), 2: 144, 4: round(0.26 * 576), 6: 144}


def test_predicted_sparsities_follow_the_updates_when_phases_fall_between_them() -> None:
    """A phase starting between two updates takes effect at the next update: ``spfde cost`` predicts that too."""
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    cfg = SparCLTDMConfig(target=0.75, phase_epochs=[1, 3], update_every_epochs=2, task_epochs=4)
    ctx = hand_context({"conv": w}, {"conv": 0.75}, cfg, epochs=8)
    tdm = SparCLTDM(cfg, task_epochs=4)
    tdm.init_masks(ctx)
    predicted = cfg.predicted_sparsities({"conv": 0.75}, 8)
    layer = ctx.masks.layers[0]
    for epoch in range(8):
        ctx.state.epoch = epoch
        tdm.on_epoch_start(ctx)
        actual = 1 - int(layer.mask.sum()) / layer.mask.numel()
        assert predicted[epoch]["conv"] == pytest.approx(actual, abs=1 / 576), epoch
    assert predicted[1]["conv"] == pytest.approx(0.74)  # phase 1 starts at epoch 1, its bounds at epoch 2


def test_a_weight_pruned_and_regrown_at_the_same_update_restarts_at_zero() -> None:
    """The code zeroes pruned weights before growing (W.mul_(pruned_mask)): regrowth never revives an old value."""
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(2))
    cfg = SparCLTDMConfig(target=0.75, lower=[0.9], upper=[0.1], phase_epochs=[])  # prune hard, regrow most
    ctx = hand_context({"conv": w}, {"conv": 0.75}, cfg, epochs=4)
    tdm = SparCLTDM(cfg, task_epochs=4)
    tdm.init_masks(ctx)
    layer = ctx.masks.layers[0]
    with torch.no_grad():
        layer.weight.mul_(layer.mask)  # the engine's masking after init
    before = layer.mask.clone()
    assert tdm.on_epoch_start(ctx)
    survivors = round(0.1 * 576)  # the lower bound keeps the top 10 % by |w|
    assert int((layer.weight[before] != 0).sum()) == survivors
    revived = layer.mask & before & (layer.weight == 0)  # pruned from the old mask, regrown now: at zero
    assert int(revived.sum()) > 0


def test_importance_adds_the_masked_gradient_of_the_previous_epochs_last_step() -> None:
    """The code prunes by |w| + 0.5 |g|, g the gradient its train() leaves from the epoch's last batch."""
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(3))
    cfg = SparCLTDMConfig(
        target=0.75, lower=[0.75, 0.9], upper=[0.75, 0.9], phase_epochs=[1], update_every_epochs=1, task_epochs=4
    )
    ctx = hand_context({"conv": w}, {"conv": 0.75}, cfg, epochs=4)
    tdm = SparCLTDM(cfg, task_epochs=4)
    tdm.init_masks(ctx)
    layer = ctx.masks.layers[0]
    with torch.no_grad():
        layer.weight.mul_(layer.mask)
    ctx.state.epoch = 0
    assert tdm.on_epoch_start(ctx)  # first update of the run: no gradient yet, |w| only
    live = layer.mask.clone()
    weights = layer.weight.detach().clone()
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(4)).abs() * 4  # large enough to reorder
    for step in range(ctx.batches_per_epoch):  # only the last step's gradient is kept
        layer.weight.grad = grad if step == ctx.batches_per_epoch - 1 else torch.full_like(grad, 1e6)
        tdm.after_backward(ctx)
    ctx.state.epoch = 1
    assert tdm.on_epoch_start(ctx)
    keep = round(0.1 * 576)  # epoch 1: prune the 144 live weights to 10 % density, no regrowth
    score = (weights.abs() + 0.5 * grad * live).flatten()
    expected = torch.zeros(576, dtype=torch.bool)
    expected[score.topk(keep).indices] = True
    assert torch.equal(layer.mask.flatten(), expected)
    by_magnitude = torch.zeros(576, dtype=torch.bool)
    by_magnitude[weights.abs().flatten().topk(keep).indices] = True
    assert not torch.equal(expected, by_magnitude)  # the gradient term changed the choice
    assert "0.5 |g|" in tdm.choices()["importance"] and tdm.last_grads == {}
