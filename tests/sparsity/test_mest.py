"""MEST+EM and MEST+EM&S: the official code's schedule, prune and grow rules (reference notes Sec. 1)."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import StepInvariants, hand_context

from spfde_core.cli import load_config
from spfde_core.sparsity.mest import MEST, MESTConfig, default_bounds
from spfde_core.train.run import run_training


def test_default_bounds_match_the_shipped_scripts() -> None:
    lower, upper = default_bounds("mest_em", 0.9)
    assert lower == pytest.approx([0.92, 0.91, 0.90]) and upper == pytest.approx([0.9, 0.9, 0.9])
    lower, upper = default_bounds("mest_ems", 0.9)
    assert lower == pytest.approx([0.9, 0.9, 0.9]) and upper == pytest.approx([0.85, 0.875, 0.9])
    lower, _ = default_bounds("mest_em", 0.95)
    assert lower == pytest.approx([0.96, 0.955, 0.95])  # the commented-out 95% EM script


def _ctx(name: str, seed_weights: int = 0):
    g = torch.Generator().manual_seed(seed_weights)
    w = torch.randn(8, 8, 3, 3, generator=g)  # 576 weights
    cfg = MESTConfig(name=name, target=0.9)
    return hand_context({"conv": w}, {"conv": 0.9}, cfg), MEST(cfg)


def test_initial_mask_is_the_top_magnitude_of_the_init() -> None:
    ctx, mest = _ctx("mest_ems")
    mest.init_masks(ctx)
    layer = ctx.masks.layers[0]
    k = round(0.1 * 576)
    expected = torch.zeros(576, dtype=torch.bool)
    expected[torch.topk(layer.weight.detach().abs().flatten(), k).indices] = True
    assert torch.equal(layer.mask.flatten(), expected)


def test_ems_mutation_grows_only_at_zero_positions_up_to_upper() -> None:
    ctx, mest = _ctx("mest_ems")
    mest.init_masks(ctx)
    layer = ctx.masks.layers[0]
    before = layer.mask.clone()
    assert mest.on_epoch_start(ctx)  # epoch 0 mutates, before any training
    grown = layer.mask & ~before
    assert torch.equal(layer.mask & before, before)  # prune to 0.9 removed nothing: already at 0.9
    assert int(layer.mask.sum()) == round(0.15 * 576) and layer.target == pytest.approx(0.85)
    assert int(grown.sum()) == round(0.15 * 576) - round(0.1 * 576)
    # Next mutation (epoch 5): prune back to 0.9 among old AND grown weights by |w|.
    with torch.no_grad():
        layer.weight.mul_(layer.mask)  # grown weights start at 0 ...
        layer.weight[grown] = 100.0  # ... pretend they learned large values
    ctx.state.epoch = 5
    assert mest.on_epoch_start(ctx)
    survivors = layer.mask & before
    # All grown (now large) weights survive the prune; the smallest old ones made room for them.
    assert torch.equal(layer.mask & grown, grown)
    assert int(survivors.sum()) < int(before.sum())


def test_em_mutation_prunes_smallest_and_never_exceeds_upper() -> None:
    ctx, mest = _ctx("mest_em")
    mest.init_masks(ctx)
    layer = ctx.masks.layers[0]
    magnitudes = layer.weight.detach().abs()
    before = layer.mask.clone()
    mest.on_epoch_start(ctx)
    # Prune to 0.92 keeps the round(0.08 * 576) largest old weights; growth then picks random zero
    # positions, which may include weights pruned a moment earlier (as the code does).
    k = round(0.08 * 576)
    top = torch.zeros(576, dtype=torch.bool)
    top[torch.topk((magnitudes * before).flatten(), k).indices] = True
    assert torch.equal(layer.mask.flatten() & top, top)
    assert int((layer.mask & before).sum()) < int(before.sum())  # some old weights were dropped
    assert int(layer.mask.sum()) == round(0.1 * 576)  # grown back to exactly 0.9, not beyond


def test_schedule_every_5_epochs_from_0_and_phase_boundaries() -> None:
    ctx, mest = _ctx("mest_ems")
    mest.init_masks(ctx)
    layer = ctx.masks.layers[0]
    mutated, targets = [], {}
    for epoch in range(160):
        ctx.state.epoch = epoch
        if mest.on_epoch_start(ctx):
            mutated.append(epoch)
            targets[epoch] = layer.target
    assert mutated == list(range(0, 160, 5))
    assert targets[85] == pytest.approx(0.85) and targets[90] == pytest.approx(0.875)
    assert targets[115] == pytest.approx(0.875) and targets[120] == pytest.approx(0.9)
    assert targets[155] == pytest.approx(0.9)


def test_growth_is_reproducible_from_the_seed() -> None:
    masks = []
    for _ in range(2):
        ctx, mest = _ctx("mest_ems")
        mest.init_masks(ctx)
        mest.on_epoch_start(ctx)
        masks.append(ctx.masks.layers[0].mask.clone())
    assert torch.equal(masks[0], masks[1])


@pytest.mark.smoke
def test_mest_ems_smoke_run_keeps_invariants_and_momentum(smoke_overrides) -> None:
    cfg = load_config([*smoke_overrides, "sparsity=mest_ems", "train.epochs=4", "sparsity.update_every_epochs=2"])
    checker = StepInvariants()
    record = run_training(cfg, extra_callbacks=[checker])
    assert checker.steps == 4 * 16
    block = record["sparsity"]
    assert block["method"] == "mest_ems" and block["num_mask_updates"] == 2  # epochs 0 and 2
    assert block["choices"]["momentum"] == "never reset"
    # Between mutations EM&S carries more weights than the target (soft memory bound).
    assert block["sparse_layers_density"] == pytest.approx(0.15, abs=0.01)
    assert 0.15 < block["exploration_rate"] <= 1
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])
