"""The sparse-training engine: masking invariants, momentum policy, drift detection, checkpoint and resume."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import StepInvariants

from spfde_core.cli import load_config
from spfde_core.sparsity.engine import SparsityDriftError
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


class MomentumProbe:
    """Records, after each step, the largest |momentum| at inactive positions of masked layers."""

    def __init__(self) -> None:
        self.max_inactive_momentum = 0.0

    def after_step(self, state, step) -> None:
        for module in state.model.modules():
            if hasattr(module, "weight_mask"):
                buf = state.optimizer.state[module.weight].get("momentum_buffer")
                if buf is not None:
                    value = buf[~module.weight_mask].abs().max().item() if (~module.weight_mask).any() else 0
                    self.max_inactive_momentum = max(self.max_inactive_momentum, value)


def test_static_run_keeps_pruned_weights_zero_and_resets_their_momentum(smoke_overrides) -> None:
    checker, probe = StepInvariants(), MomentumProbe()
    cfg = load_config([*smoke_overrides, "sparsity=static_random", "sparsity.target=0.8"])
    record = run_training(cfg, extra_callbacks=[checker, probe])
    assert checker.steps == 2 * 16
    # The engine's masking runs before these probes (methods come first), so what they see is final.
    assert probe.max_inactive_momentum == 0.0
    block = record["sparsity"]
    assert block["sparse_layers_density"] == pytest.approx(0.2, abs=0.01)
    assert block["exploration_rate"] == pytest.approx(block["sparse_layers_density"])  # static: no exploration
    assert torch.equal(checker.mask_history[0], checker.mask_history[-1])


def test_mest_keeps_momentum_of_pruned_weights_as_the_code_does(smoke_overrides) -> None:
    probe = MomentumProbe()
    cfg = load_config([*smoke_overrides, "sparsity=mest_em", "train.epochs=3", "sparsity.update_every_epochs=1"])
    run_training(cfg, extra_callbacks=[probe])
    # Weights pruned at a mutation keep (decaying) momentum: MEST never resets it.
    assert probe.max_inactive_momentum > 0.0


class BreakMasks:
    """A faulty 'method' that deactivates extra weights at epoch 1 without telling the engine."""

    def on_epoch_start(self, state) -> None:
        if state.epoch == 1:
            for module in state.model.modules():
                if hasattr(module, "weight_mask"):
                    module.weight_mask[0].zero_()
                    return


def test_density_drift_fails_loudly(smoke_overrides) -> None:
    cfg = load_config([*smoke_overrides, "sparsity=mest_ems", "train.epochs=3", "sparsity.update_every_epochs=2"])
    with pytest.raises(SparsityDriftError, match="active weights after epoch_end at epoch 1"):
        run_training(cfg, extra_callbacks=[BreakMasks()])


class Kill(Exception):
    pass


class KillInEpoch:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch and state.step % 16 == 3:
            raise Kill


def test_masks_are_checkpointed_and_a_resumed_sparse_run_is_identical(smoke_overrides, tmp_path) -> None:
    overrides = [*smoke_overrides, "sparsity=mest_ems", "train.epochs=4", "sparsity.update_every_epochs=1"]
    whole = run_training(
        load_config([*overrides, f"run.results_dir={tmp_path / 'w'}", f"run.checkpoint_dir={tmp_path / 'cw'}"])
    )
    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch(2)])
    checkpoint = torch.load(tmp_path / "checkpoints" / "test" / "smoke" / "seed0" / "last.pt", weights_only=True)
    assert any(key.endswith("weight_mask") for key in checkpoint["model"])
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [2]
    assert resumed["results"] == whole["results"]
    for key in ("layers", "exploration_rate", "sparse_layers_density", "num_mask_updates"):
        assert resumed["sparsity"][key] == whole["sparsity"][key]
