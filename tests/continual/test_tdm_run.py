"""TDM inside a continual run: masked weights stay exactly zero through every task's mutations."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


class StepInvariants:
    """After every optimizer step the weights outside the mask are exactly zero; masks kept per epoch."""

    def __init__(self) -> None:
        self.steps = 0
        self.mask_history: list[torch.Tensor] = []

    def after_step(self, state, step) -> None:
        masked = [m for m in state.model.modules() if hasattr(m, "weight_mask")]
        assert masked and all(torch.all(m.weight[~m.weight_mask] == 0) for m in masked)
        self.steps += 1

    def on_epoch_end(self, state) -> None:
        masks = [m.weight_mask.flatten() for m in state.model.modules() if hasattr(m, "weight_mask")]
        self.mask_history.append(torch.cat(masks).clone())


def test_masked_weights_stay_zero_through_tasks(cl_overrides) -> None:
    checker = StepInvariants()
    cfg = load_config([*cl_overrides, "train.epochs=10", "sparsity=sparcl_tdm", "sparsity.update_every_epochs=1"])
    record = run_training(cfg, extra_callbacks=[checker])
    assert checker.steps == 10 * 3
    block = record["sparsity"]
    assert block["method"] == "sparcl_tdm" and block["num_mask_updates"] == 10  # every epoch of every task
    assert block["choices"]["task_epochs"] == 2
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])
