"""TDM inside a continual run: masked weights stay exactly zero through every task's mutations."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.train.run import run_training
from tests.sparsity.sparsity_test_utils import StepInvariants

pytestmark = pytest.mark.smoke


def test_masked_weights_stay_zero_through_tasks(cl_overrides) -> None:
    checker = StepInvariants()
    cfg = load_config([*cl_overrides, "train.epochs=10", "sparsity=sparcl_tdm", "sparsity.update_every_epochs=1"])
    record = run_training(cfg, extra_callbacks=[checker])
    assert checker.steps == 10 * 3
    block = record["sparsity"]
    assert block["method"] == "sparcl_tdm" and block["num_mask_updates"] == 10  # every epoch of every task
    assert block["choices"]["task_epochs"] == 2
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])
