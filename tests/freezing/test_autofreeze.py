"""AutoFreeze-style criterion: freeze the prefix in front of the first block whose change reaches the percentile."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.freezing.autofreeze import blocks_to_freeze
from spfde_core.train.run import run_training


def test_prefix_in_front_of_the_first_block_at_or_above_the_median() -> None:
    # Median of [0.1, 0.2, 0.9, 0.8, 0.05] is 0.2: block 1 is the first at or above it.
    assert blocks_to_freeze([0.1, 0.2, 0.9, 0.8, 0.05], 50) == 1
    assert blocks_to_freeze([0.9, 0.1, 0.1], 50) == 0  # the first block still changes a lot
    assert blocks_to_freeze([0.01, 0.02, 0.5, 0.6], 50) == 2


@pytest.mark.smoke
def test_autofreeze_run_freezes_monotonically_and_records_its_decisions(smoke_overrides) -> None:
    cfg = load_config(
        [
            *smoke_overrides,
            "freezing=autofreeze",
            "freezing.num_intervals=6",
            "train.epochs=6",
            "train.max_batches_per_epoch=4",
        ]
    )
    record = run_training(cfg)
    block = record["freezing"]
    per_epoch = block["frozen_blocks_per_epoch"]
    assert per_epoch == sorted(per_epoch) and per_epoch[0] == 0
    assert len(block["decisions"]) == 4  # intervals 2..5 compare with the previous one
    assert all(len(d["ratios"]) >= 1 for d in block["decisions"])
