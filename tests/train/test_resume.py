"""A run killed mid-way and resumed by re-running the same command ends with identical numbers."""

from __future__ import annotations

import pytest

from spfde_core import records
from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


class Kill(Exception):
    pass


class KillAfterEpoch:
    """Dies like a killed process: after epoch k's checkpoint, in the middle of epoch k+1."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch + 1 and state.step % 16 == 5:
            raise Kill


def _results_without_clocks(record: dict) -> dict:
    return record["results"]


def test_resume_after_kill_matches_uninterrupted_run(smoke_overrides, tmp_path) -> None:
    overrides = [*smoke_overrides, "train.epochs=4"]
    whole = run_training(
        load_config([*overrides, f"run.results_dir={tmp_path / 'whole'}", f"run.checkpoint_dir={tmp_path / 'ckw'}"])
    )

    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillAfterEpoch(1)])
    resumed = run_training(cfg)  # the same command again

    assert resumed["run"]["resumed_from_epoch"] == [2]
    assert resumed["results"] == whole["results"]  # bit-identical final and best accuracies and losses
    assert resumed["config_hash"] == whole["config_hash"]
    assert _training_columns(tmp_path / "whole") == _training_columns(tmp_path / "runs")


def _training_columns(results_dir) -> list[dict]:
    """The curve less its time and load columns (what two runs measure differently)."""
    import csv

    with open(results_dir / "test" / "smoke" / "seed0" / "curve.csv") as f:
        return [{k: v for k, v in row.items() if not records.is_measurement_column(k)} for row in csv.DictReader(f)]


def test_checkpoint_of_another_config_is_not_resumed(smoke_overrides, tmp_path) -> None:
    from spfde_core.train.checkpoint import CheckpointError

    cfg = load_config([*smoke_overrides, "train.epochs=3"])
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillAfterEpoch(0)])
    other = load_config([*smoke_overrides, "train.epochs=3", "optim.lr=0.05"])
    with pytest.raises(CheckpointError, match="belongs to config"):
        run_training(other)


def test_checkpoint_trained_in_another_precision_is_not_resumed(smoke_overrides, tmp_path) -> None:
    """train.precision=auto resolves per CPU after hashing: a resume on another CPU class must not mix precisions."""
    import torch

    from spfde_core.train.checkpoint import CheckpointError

    cfg = load_config([*smoke_overrides, "train.epochs=3"])
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillAfterEpoch(0)])
    (path,) = tmp_path.rglob("last.pt")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["precision"] in ("fp32", "bf16")
    ckpt["precision"] = "bf16" if ckpt["precision"] == "fp32" else "fp32"  # as if written on the other class
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="resuming would mix two precisions"):
        run_training(cfg)
    assert path.exists()  # the user's checkpoint is kept
