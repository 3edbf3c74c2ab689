"""The loop calls every hook at its moment, with what each hook is promised."""

from __future__ import annotations

import torch

from spfde_core.train.callbacks import StepOutput, TrainState
from spfde_core.train.run import run_training


class Spy:
    """Records hook order and checks each hook's promise as it is called."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.seen_indices: list[torch.Tensor] = []

    def on_train_start(self, state: TrainState) -> None:
        self.calls.append("train_start")

    def on_epoch_start(self, state: TrainState) -> None:
        self.calls.append(f"epoch_start{state.epoch}")

    def on_batch_start(self, state: TrainState, batch) -> None:
        self.calls.append("batch")
        self.weights_before = [p.detach().clone() for p in state.model.parameters()]

    def after_backward(self, state: TrainState, batch) -> None:
        self.calls.append("backward")
        params = list(state.model.parameters())
        assert all(p.grad is not None for p in params), "gradients exist after backward"
        # The optimizer has not stepped yet: weights are unchanged.
        assert all(torch.equal(p, w) for p, w in zip(params, self.weights_before, strict=True))

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        self.calls.append("step")
        params = list(state.model.parameters())
        assert any(not torch.equal(p, w) for p, w in zip(params, self.weights_before, strict=True))
        b = len(step.indices)
        assert step.losses.shape == (b,) and step.correct.shape == (b,) and step.correct.dtype == torch.bool
        assert step.logits.shape[0] == b and not step.losses.requires_grad
        self.seen_indices.append(step.indices.cpu())

    def on_epoch_end(self, state: TrainState) -> None:
        self.calls.append(f"epoch_end{state.epoch}")
        assert "test_acc" in state.epoch_log and "train_loss" in state.epoch_log

    def on_train_end(self, state: TrainState) -> None:
        self.calls.append("train_end")


def test_hooks_fire_in_order_with_their_promises(smoke_cfg) -> None:
    spy = Spy()
    smoke_cfg.train.epochs = 2
    run_training(smoke_cfg, extra_callbacks=[spy])

    batches = 512 // 32
    epoch = ["batch", "backward", "step"] * batches
    expected = [
        "train_start",
        "epoch_start0",
        *epoch,
        "epoch_end0",
        "epoch_start1",
        *epoch,
        "epoch_end1",
        "train_end",
    ]
    assert spy.calls == expected
    # Each epoch presents every training sample exactly once.
    first_epoch = torch.cat(spy.seen_indices[:batches])
    assert torch.equal(first_epoch.sort().values, torch.arange(512))
