"""The training loop: plain PyTorch, extended only through callbacks (see callbacks.py)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
import torch.nn.functional as F

from spfde_core.distributed.step import all_reduce_sums, gather_step, global_batch_size, shard_sizes
from spfde_core.train.callbacks import CallbackList, StepOutput, TrainState
from spfde_core.train.optim import apply_schedules

# Distributed training (spfde_core/distributed): ``dist`` is None in a single-process run, whose code
# path below is unchanged; with a DistContext each rank trains on its piece of every global batch.


def autocast(state: TrainState) -> contextlib.AbstractContextManager:
    """bf16 autocast when train.precision (resolved by train.build.resolve_hardware) is bf16; a no-op for fp32."""
    enabled = state.cfg.train.precision == "bf16"
    return torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=enabled)


def train_epoch(state: TrainState, callbacks: CallbackList, forward: torch.nn.Module, dist: Any = None) -> None:
    """One pass over the active training set; fills ``state.epoch_log`` with train loss/acc/time.

    Distributed (``dist`` given): this rank trains on its piece of each global batch, the loss is
    scaled so DDP's gradient average is the global-batch mean, and ``after_step`` callbacks get the
    gathered global ``StepOutput`` (spfde_core/distributed/step.py), identical on every rank.
    """
    cfg = state.cfg
    loader = state.train_loader if state.epoch_loader is None else state.epoch_loader  # feature cache
    max_batches = cfg.train.max_batches_per_epoch
    start_block = getattr(loader, "start_block", 0)  # cached maps enter the model behind the frozen prefix
    num_batches = min(len(loader), max_batches) if max_batches else len(loader)
    state.model.train()
    # Sums stay on the device; one host sync per epoch instead of one per batch.
    loss_sum = torch.zeros((), device=state.device)
    correct_sum = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    batches = loader if dist is None else loader.iter_shard(dist.rank, dist.world_size)
    for i, batch in enumerate(batches):
        if i == num_batches:
            break
        t = state.epoch + (i / num_batches if cfg.optim.per_iteration else 0.0)
        apply_schedules(state.optimizer, state.schedules, t)
        callbacks.on_batch_start(state, batch)
        with autocast(state):
            logits = forward(batch.images, start_block=start_block) if start_block else forward(batch.images)
        logits = logits.float()
        loss_logits = logits if state.loss_logits is None else state.loss_logits(logits)  # continual: task mask
        losses = F.cross_entropy(loss_logits, batch.labels, reduction="none", label_smoothing=cfg.train.label_smoothing)
        state.optimizer.zero_grad(set_to_none=True)
        if dist is None:
            losses.mean().backward()
        else:
            sizes = shard_sizes(global_batch_size(loader, i), dist.world_size)
            (losses.sum() * (dist.world_size / sum(sizes))).backward()  # DDP divides by world_size
        callbacks.after_backward(state, batch)
        state.optimizer.step()
        losses = losses.detach()
        correct = logits.detach().argmax(1) == batch.labels
        step = StepOutput(batch.indices, losses, correct, logits.detach())
        if dist is not None:
            step = gather_step(step, sizes)  # the global batch, in single-process order
            losses, correct = step.losses, step.correct
        callbacks.after_step(state, step)
        loss_sum += losses.sum()
        correct_sum += correct.sum()
        seen += len(losses)
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
def evaluate(state: TrainState, forward: torch.nn.Module, dist: Any = None) -> dict[str, float]:
    """Top-1 accuracy and mean loss on the test split (un-augmented, fixed order).

    Distributed: each rank evaluates its piece of every test batch and the sums are all-reduced.
    """
    state.model.eval()
    loss_sum = torch.zeros((), device=state.device)
    correct_sum = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    batches = state.test_loader
    if dist is not None:
        batches = batches.iter_shard(dist.rank, dist.world_size)
    for batch in batches:
        with autocast(state):
            logits = forward(batch.images).float()
        loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum")
        correct_sum += (logits.argmax(1) == batch.labels).sum()
        seen += len(batch.labels)
    if dist is not None:
        loss_sum, correct_sum, total = all_reduce_sums(loss_sum, correct_sum, torch.tensor(seen))
        seen = int(total.item())
    return {
        "test_loss": loss_sum.item() / seen,
        "test_acc": correct_sum.item() / seen,
        "eval_s": time.perf_counter() - start,
    }


def train(state: TrainState, callbacks: CallbackList, forward: torch.nn.Module, dist: Any = None) -> None:
    """Run epochs ``state.epoch .. train.epochs-1``; evaluation, records and checkpoints are callbacks."""
    callbacks.on_train_start(state)
    while state.epoch < state.cfg.train.epochs:
        epoch_start = time.perf_counter()
        state.epoch_log = {}
        state.train_loader.set_epoch(state.epoch)
        callbacks.on_epoch_start(state)
        train_epoch(state, callbacks, forward, dist)
        last = state.epoch + 1 == state.cfg.train.epochs
        if last or (state.epoch + 1) % state.cfg.train.eval_every_epochs == 0:
            state.epoch_log.update(evaluate(state, forward, dist))
        state.elapsed_s += time.perf_counter() - epoch_start
        state.epoch_log["elapsed_s"] = state.elapsed_s
        state.history.append(state.epoch_log)
        callbacks.on_epoch_end(state)
        state.epoch += 1
    callbacks.on_train_end(state)
