"""What ``spfde cost`` needs to predict a continual run (``cost/predict.py``): samples, replay, evaluation per epoch.

The meter charges a continual run's steps on the current task's active samples (DDR removals included), its
rehearsal as ``replay_pass`` overheads and the harness's per-task evaluation (one pass over the test split at
each task's last epoch) as ``eval_pass`` evaluation FLOPs (docs/continual.md). Predicted here without data:
tasks of equal size (``num_train // num_tasks``; exact for the CIFAR and Tiny-ImageNet splits), DDR removing its
full count at each point, and full buffer batches (``min(batch, buffer_size)`` samples) from the second task on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig

from spfde_core.continual.common import epochs_per_task, is_on
from spfde_core.continual.ddr import count_per_point, removal_points
from spfde_core.continual.replay import buffer_passes
from spfde_core.cost.meter import baseline_epoch_samples


@dataclass(frozen=True)
class EpochPlan:
    samples: int
    """Training samples the epoch presents (the current task's active set, batch cap and drop_last applied)."""
    replay: int
    """Buffer samples trained beside them (forward + backward each)."""
    eval_passes: int = 0
    """Per-task evaluation passes over the whole test split at the epoch's end (1 at a task's last epoch)."""


def continual_plan(cfg: DictConfig, num_train: int) -> list[EpochPlan] | None:
    """Per epoch, samples, replay samples and per-task evaluation passes of a continual run; None when it is off."""
    if not is_on(cfg):
        return None
    c, t = cfg.continual, cfg.train
    per_task, batch = epochs_per_task(cfg), int(t.batch_size)
    task_size = num_train // int(c.num_tasks)
    passes = buffer_passes(c.replay) if int(c.buffer_size) else 0
    d = c.ddr
    points = removal_points(int(d.every_epochs), int(d.until_epoch)) if d.enabled else []
    count = count_per_point(int(d.remove_per_task), int(d.every_epochs), int(d.until_epoch)) if d.enabled else 0
    plan = []
    for epoch in range(int(t.epochs)):
        task, local = divmod(epoch, per_task)
        size = max(task_size - count * sum(1 for p in points if p <= local), 0)
        samples = baseline_epoch_samples(size, batch, bool(t.drop_last), t.max_batches_per_epoch)
        replay = math.ceil(samples / batch) * passes * min(batch, int(c.buffer_size)) if task > 0 else 0
        plan.append(EpochPlan(samples, replay, eval_passes=int(local == per_task - 1)))
    return plan


def task_epochs(cfg: DictConfig) -> int | None:
    """Epochs per task of a continual run (for methods whose schedule restarts per task), else None."""
    return epochs_per_task(cfg) if is_on(cfg) else None
