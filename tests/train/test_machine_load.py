"""The record's machine-load summary (issue 18: say how loaded a run's machine was)."""

from __future__ import annotations

import pytest

from spfde_core.records import is_measurement_column
from spfde_core.train.run import load_summary


def test_load_summary_covers_only_the_epochs_that_measured_it() -> None:
    # Epoch 0 trained before load was recorded (a run resumed across the change): 100 s of wall-clock
    # that must count neither in the CPU share nor in the load.
    history = [
        {"epoch": 0, "elapsed_s": 100.0},
        {"epoch": 1, "elapsed_s": 150.0, "cpu_s": 45.0, "load_1m": 2.0},
        {"epoch": 2, "elapsed_s": 250.0, "cpu_s": 60.0, "load_1m": 3.5},
    ]
    summary = load_summary(history)
    assert summary["load_epochs"] == 2
    assert summary["cpu_s"] == 105.0
    assert summary["cpu_per_wall"] == pytest.approx(105.0 / 150.0)
    assert summary["load_1m_mean"] == 2.75 and summary["load_1m_max"] == 3.5


def test_no_measured_epoch_adds_nothing_and_an_os_without_load_average_keeps_cpu() -> None:
    assert load_summary([{"epoch": 0, "elapsed_s": 10.0}]) == {}
    summary = load_summary([{"epoch": 0, "elapsed_s": 10.0, "cpu_s": 5.0}])
    assert summary == {"load_epochs": 1, "cpu_s": 5.0, "cpu_per_wall": 0.5}


def test_load_and_time_columns_are_measurements_and_training_columns_are_not() -> None:
    assert all(is_measurement_column(c) for c in ("cpu_s", "load_1m", "train_s", "elapsed_s"))
    assert not any(is_measurement_column(c) for c in ("train_loss", "test_acc", "lr", "train_samples"))
