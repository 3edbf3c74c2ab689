"""The training loop: plain PyTorch, extended only through callbacks (see callbacks.py)."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from spfde_core.train.callbacks import CallbackList, StepOutput, TrainState
from spfde_core.train.optim import apply_schedules


def autocast(state: TrainState) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU (AMX) and GPU when train.precision=bf16; a no-op for fp32."""
    enabled = state.cfg.train.precision == "bf16"
    return torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=enabled)


def train_epoch(state: TrainState, callbacks: CallbackList, forward: torch.nn.Module) -> None:
    """One pass over the active training set; fills ``state.epoch_log`` with train loss/acc/time."""
    cfg = state.cfg
    loader, max_batches = state.train_loader, cfg.train.max_batches_per_epoch
    num_batches = min(len(loader), max_batches) if max_batches else len(loader)
    state.model.train()
    # Sums stay on the device; one host sync per epoch instead of one per batch.
    loss_sum = torch.zeros((), device=state.device)
    correct_sum = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        if i == num_batches:
            break
        t = state.epoch + (i / num_batches if cfg.optim.per_iteration else 0.0)
        apply_schedules(state.optimizer, state.schedules, t)
        callbacks.on_batch_start(state, batch)
        with autocast(state):
            logits = forward(batch.images)
        logits = logits.float()
        losses = F.cross_entropy(logits, batch.labels, reduction="none", label_smoothing=cfg.train.label_smoothing)
        state.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        callbacks.after_backward(state, batch)
        state.optimizer.step()
        losses = losses.detach()
        correct = logits.detach().argmax(1) == batch.labels
        callbacks.after_step(state, StepOutput(batch.indices, losses, correct, logits.detach()))
        loss_sum += losses.sum()
        correct_sum += correct.sum()
        seen += len(batch.labels)
        state.step += 1
    seconds = time.perf_counter() - start
    state.train_s += seconds
    state.images_trained += seen
    state.epoch_log.update(
        epoch=state.epoch,
        lr=state.optimizer.param_groups[-1]["lr"],
        train_loss=loss_sum.item() / max(seen, 1),
        train_acc=correct_sum.item() / max(seen, 1),
        train_samples=seen,
        train_s=seconds,
        train_images_per_s=seen / seconds if seconds > 0 else 0.0,
    )


@torch.no_grad()
def evaluate(state: TrainState, forward: torch.nn.Module) -> dict[str, float]:
    """Top-1 accuracy and mean loss on the test split (un-augmented, fixed order)."""
    state.model.eval()
    loss_sum = torch.zeros((), device=state.device)
    correct_sum = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for batch in state.test_loader:
        with autocast(state):
            logits = forward(batch.images).float()
        loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum")
        correct_sum += (logits.argmax(1) == batch.labels).sum()
        seen += len(batch.labels)
    return {
        "test_loss": loss_sum.item() / seen,
        "test_acc": correct_sum.item() / seen,
        "eval_s": time.perf_counter() - start,
    }


def train(state: TrainState, callbacks: CallbackList, forward: torch.nn.Module) -> None:
    """Run epochs ``state.epoch .. train.epochs-1``; evaluation, records and checkpoints are callbacks."""
    callbacks.on_train_start(state)
    while state.epoch < state.cfg.train.epochs:
        epoch_start = time.perf_counter()
        state.epoch_log = {}
        state.train_loader.set_epoch(state.epoch)
        callbacks.on_epoch_start(state)
        train_epoch(state, callbacks, forward)
        last = state.epoch + 1 == state.cfg.train.epochs
        if last or (state.epoch + 1) % state.cfg.train.eval_every_epochs == 0:
            state.epoch_log.update(evaluate(state, forward))
        state.elapsed_s += time.perf_counter() - epoch_start
        state.epoch_log["elapsed_s"] = state.elapsed_s
        state.history.append(state.epoch_log)
        callbacks.on_epoch_end(state)
        state.epoch += 1
    callbacks.on_train_end(state)
