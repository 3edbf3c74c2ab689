"""FreezeOut: per-block stop times, per-block cosine LR to zero with scaling, then frozen."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.freezing.freezeout import stop_fractions
from spfde_core.train.run import run_training


def test_stop_fractions_follow_the_cubic_rule() -> None:
    fractions = stop_fractions(5, t0=0.8, how_scale="cubic")
    assert fractions == pytest.approx([0.8**3, 0.85**3, 0.9**3, 0.95**3, 1.0])
    assert stop_fractions(3, 0.5, "linear") == pytest.approx([0.5, 0.75, 1.0])


class LRProbe:
    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_batch_start(self, state, batch) -> None:
        if not self.lrs or len(self.lrs) <= state.epoch:
            self.lrs.append([g["lr"] for g in state.optimizer.param_groups])


@pytest.mark.smoke
def test_each_block_anneals_to_zero_at_its_stop_and_is_then_frozen(smoke_overrides) -> None:
    probe = LRProbe()
    overrides = [*smoke_overrides, "freezing=freezeout", "freezing.t0=0.5", "freezing.how_scale=linear"]
    cfg = load_config([*overrides, "train.epochs=8", "train.max_batches_per_epoch=2"])
    record = run_training(cfg, extra_callbacks=[probe])
    stops = record["freezing"]["choices"]["stop_epochs"]
    first = record["freezing"]["first_frozen_epoch"]
    assert first["stem"] == 4  # t = 0.5 of 8 epochs
    # Scaled initial LR: lr / t_i for the stem (t = 0.5) at epoch 0.
    assert probe.lrs[0][0] == pytest.approx(0.1 / 0.5)
    # Its LR at the last epoch before the stop is on the way to zero, below the head's.
    assert probe.lrs[3][0] < probe.lrs[0][0]
    assert stops["head"] == pytest.approx(8.0) and "head" not in first
