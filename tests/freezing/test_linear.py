"""Linear freezing (Composer LayerFreezing schedule) on blocks."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.freezing.linear import linear_count
from spfde_core.train.run import run_training


def test_schedule_starts_late_grows_linearly_and_never_freezes_the_head() -> None:
    frozen = linear_count(num_blocks=11, epochs=100, start_fraction=0.5, freeze_level=1.0)
    assert [frozen(e) for e in (0, 49, 50)] == [0, 0, 0]
    assert frozen(75) == 5  # halfway between start and end: floor(0.5 * 11)
    assert frozen(99) == 10  # all but the head
    counts = [frozen(e) for e in range(100)]
    assert counts == sorted(counts)


@pytest.mark.smoke
def test_linear_run_records_its_frozen_prefix(smoke_overrides) -> None:
    cfg = load_config([*smoke_overrides, "freezing=linear", "train.epochs=6", "train.max_batches_per_epoch=4"])
    record = run_training(cfg)
    per_epoch = record["freezing"]["frozen_blocks_per_epoch"]
    assert per_epoch[:3] == [0, 0, 0] and per_epoch[-1] > 0 and per_epoch == sorted(per_epoch)
    assert record["cost"]["training_flops"]["savings"]["freezing"] > 0
