"""A continual run killed after a task boundary and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


class Kill(Exception):
    pass


class KillInEpoch:
    """Dies like a killed process in the middle of epoch ``epoch`` (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_step(self, state, step) -> None:
        if state.epoch == self.epoch:
            raise Kill


def test_resume_across_a_task_boundary_is_bit_exact(cl_overrides, tmp_path) -> None:
    # 5 tasks x 2 epochs; DER++, DDR, DGM and TDM on: buffer, statistics, removals, weight masks and TDM's stored
    # gradient all cross the kill.
    overrides = [
        *cl_overrides,
        "train.epochs=10",
        "continual.ddr.enabled=true",
        "continual.ddr.every_epochs=1",
        "continual.ddr.until_epoch=1",
        "continual.ddr.remove_per_task=10",
        "continual.dgm.enabled=true",
        "continual.dgm.refresh_batches=2",
        "sparsity=sparcl_tdm",  # an update at every epoch, scored with the previous epoch's last gradient
        "sparsity.update_every_epochs=1",
        "sparsity.importance_lambda=1000",  # the gradient term decides: a resume that lost it would prune otherwise
    ]
    whole = run_training(
        load_config([*overrides, f"run.results_dir={tmp_path / 'whole'}", f"run.checkpoint_dir={tmp_path / 'ckw'}"])
    )
    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch(4)])  # task 2's first epoch; checkpoint after task 1
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [4]
    assert resumed["results"] == whole["results"]
    for block in ("continual", "continual_ddr", "continual_dgm", "continual_cost"):
        assert resumed[block] == whole[block], block
    assert whole["continual"]["steps_with_replay"] > 0 and whole["continual_ddr"]["removed_total"] == 50
