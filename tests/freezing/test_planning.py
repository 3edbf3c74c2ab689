"""Freezing plans: SpFDE's T_frz solver and the periodic group solver on hand-made FLOPs tables."""

from __future__ import annotations

import pytest

from spfde_core.freezing.planning import (
    PlanError,
    blocks_covering_layers,
    periodic_count,
    saving_share,
    solve_periodic,
    solve_progressive,
    staircase,
)
from spfde_core.models import build_model

# F(k): per-sample FLOPs with the first k blocks frozen; each block saves 10 of 100.
FLOPS = [100, 90, 80, 70, 60, 50]


def test_saving_share_by_hand() -> None:
    # Block 1 frozen from epoch 5 of 10, block 2 from epoch 8: (5*10 + 2*10) / (10*100).
    assert saving_share(FLOPS, staircase([5, 8]), 10) == pytest.approx(0.07)


def test_progressive_freezes_front_to_back_every_interval_from_the_latest_feasible_start() -> None:
    epochs, interval = 20, 2
    freeze = solve_progressive(FLOPS, epochs, interval, max_blocks=4, target=0.1)
    assert all(b - a == interval for a, b in zip(freeze, freeze[1:], strict=False))
    assert all(t % interval == 0 for t in freeze)
    achieved = saving_share(FLOPS, staircase(freeze), epochs)
    assert achieved >= 0.1
    # Within one block's granularity: without the last block the target is missed.
    assert saving_share(FLOPS, staircase(freeze[:-1]), epochs) < 0.1
    # The latest start: starting one interval later cannot reach the target with <= 4 blocks.
    later = [t + interval for t in freeze] + [freeze[-1] + 2 * interval]
    assert saving_share(FLOPS, staircase(later[:4]), epochs) < 0.1


def test_unreachable_target_says_what_is_reachable() -> None:
    with pytest.raises(PlanError, match="out of reach"):
        solve_progressive(FLOPS, 10, 2, max_blocks=2, target=0.5)


def test_periodic_pattern_trains_group1_one_in_four_and_group2_one_in_two() -> None:
    frozen = periodic_count(1, 3, start=4)
    assert [frozen(e) for e in range(12)] == [0, 0, 0, 0, 0, 3, 1, 3, 0, 3, 1, 3]
    k1, k2 = solve_periodic(FLOPS, 40, 0, 0.1)
    assert saving_share(FLOPS, periodic_count(k1, k2, 0), 40) >= 0.1 and k1 <= k2


def test_two_thirds_of_the_layers_of_resnet32_w2() -> None:
    model = build_model("resnet32_w2", 10)
    # 34 conv/linear layers; 2/3 -> 23: stem (1) + 9 blocks of stage 1-2 (2 each, +1 shortcut) + ...
    k = blocks_covering_layers(model, 0.667)
    counts = [sum(1 for m in b.modules() if m.__class__.__name__ in ("Conv2d", "Linear")) for b in model.blocks]
    assert sum(counts[:k]) >= 0.667 * 34 > sum(counts[: k - 1])
