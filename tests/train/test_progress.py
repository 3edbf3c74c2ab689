"""A run whose output goes to a file is never silent for a whole epoch: a progress line with images/s
and ETA every log_every_s seconds (issue 12), besides the one line per epoch."""

from __future__ import annotations

import itertools
import logging

import pytest

from spfde_core.cli import load_config
from spfde_core.train import progress
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


def test_non_tty_runs_log_progress_with_eta(smoke_overrides, caplog, monkeypatch) -> None:
    clock = itertools.count(0.0, 31.0)  # every reading of the clock is 31 s later: a line per batch
    monkeypatch.setattr(progress, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="spfde_core.train"):
        run_training(load_config([*smoke_overrides, "train.epochs=2", "train.max_batches_per_epoch=4"]))
    lines = [r.getMessage() for r in caplog.records if "run ETA" in r.getMessage()]
    assert lines, "no progress line although every batch took 31 s"
    assert lines[0].startswith("epoch 1/2: batch 1/4, ") and "img/s" in lines[0]
    assert any(line.startswith("epoch 2/2: batch 4/4") and "run ETA 0m00s" in line for line in lines)


def test_no_progress_lines_within_the_interval(smoke_overrides, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="spfde_core.train"):
        run_training(load_config([*smoke_overrides, "train.epochs=1", "train.max_batches_per_epoch=2"]))
    assert not [r for r in caplog.records if "run ETA" in r.getMessage()]  # a seconds-long epoch: one line
