"""The training loop: plain PyTorch, extended only through callbacks (see callbacks.py)."""

from __future__ import annotations

import contextlib
import os
import time

import torch
import torch.nn.functional as F

from spfde_core.distributed.processes import Processes, SingleProcess
from spfde_core.train.callbacks import CallbackList, StepOutput, TrainState
from spfde_core.train.optim import apply_schedules

# ``procs`` is the process layout (spfde_core/distributed/processes.py): ``SingleProcess``, whose
# steps are the plain trainer's, or torchrun's ``Ranks``, each training on its piece of every batch.
ONE_PROCESS = SingleProcess()


def autocast(state: TrainState) -> contextlib.AbstractContextManager:
    """bf16 autocast when train.precision (resolved by train.build.resolve_hardware) is bf16; a no-op for fp32."""
    enabled = state.cfg.train.precision == "bf16"
    return torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=enabled)


def train_epoch(
    state: TrainState, callbacks: CallbackList, forward: torch.nn.Module, procs: Processes = ONE_PROCESS
) -> None:
    """One pass over the active training set; fills ``state.epoch_log`` with train loss/acc/time.

    Distributed (``Ranks``): this rank trains on its piece of each global batch, the loss is
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
    for i, batch in enumerate(procs.shard(loader)):
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
        procs.backward(losses, loader, i)
        callbacks.after_backward(state, batch)
        state.optimizer.step()
        correct = logits.detach().argmax(1) == batch.labels
        step = procs.gather(StepOutput(batch.indices, losses.detach(), correct, logits.detach()), loader, i)
        callbacks.after_step(state, step)
        loss_sum += step.losses.sum()
        correct_sum += step.correct.sum()
        seen += len(step.losses)
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
def evaluate(state: TrainState, forward: torch.nn.Module, procs: Processes = ONE_PROCESS) -> dict[str, float]:
    """Top-1 accuracy and mean loss on the test split (un-augmented, fixed order).

    Distributed: each rank evaluates its piece of every test batch and the sums are all-reduced.
    """
    state.model.eval()
    loss_sum = torch.zeros((), device=state.device)
    correct_sum = torch.zeros((), device=state.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for batch in procs.shard(state.test_loader):
        with autocast(state):
            logits = forward(batch.images).float()
        loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum")
        correct_sum += (logits.argmax(1) == batch.labels).sum()
        seen += len(batch.labels)
    loss_sum, correct_sum, seen = procs.sum_over_processes(loss_sum, correct_sum, seen)
    return {
        "test_loss": loss_sum.item() / seen,
        "test_acc": correct_sum.item() / seen,
        "eval_s": time.perf_counter() - start,
    }


def machine_load(cpu_s: float) -> dict[str, float]:
    """How busy the machine was during an epoch, for the record (issue 18: say how loaded a run's machine was).

    ``cpu_s``: CPU seconds this process used in the epoch, all its threads (not data-loader worker
    processes); against the epoch's wall-clock it shows whether the run had its cores. ``load_1m``:
    the kernel's 1-minute load average at the epoch's end (runnable tasks on the whole machine, so
    other runs, tests and benchmarks count); absent where the OS has none.
    """
    load = {"cpu_s": cpu_s}
    if hasattr(os, "getloadavg"):
        load["load_1m"] = os.getloadavg()[0]
    return load


def train(state: TrainState, callbacks: CallbackList, forward: torch.nn.Module, procs: Processes = ONE_PROCESS) -> None:
    """Run epochs ``state.epoch .. train.epochs-1``; evaluation, records and checkpoints are callbacks."""
    callbacks.on_train_start(state)
    while state.epoch < state.cfg.train.epochs:
        epoch_start = time.perf_counter()
        cpu_start = time.process_time()
        state.epoch_log = {}
        state.train_loader.set_epoch(state.epoch)
        callbacks.on_epoch_start(state)
        train_epoch(state, callbacks, forward, procs)
        last = state.epoch + 1 == state.cfg.train.epochs
        if last or (state.epoch + 1) % state.cfg.train.eval_every_epochs == 0:
            state.epoch_log.update(evaluate(state, forward, procs))
        state.elapsed_s += time.perf_counter() - epoch_start
        state.epoch_log["elapsed_s"] = state.elapsed_s
        state.epoch_log.update(machine_load(time.process_time() - cpu_start))
        state.history.append(state.epoch_log)
        callbacks.on_epoch_end(state)
        state.epoch += 1
    callbacks.on_train_end(state)
