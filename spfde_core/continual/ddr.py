"""SparCL's dynamic data removal (DDR): the least-forgotten examples of the current task stop being trained.

As ``main()`` of ``main_sparse_train_w_data_gradient_efficient.py`` runs it (script: --remove-n 3000,
--remove-data-epoch 20, --sp-mask-update-freq 5, --keep-lowest-n 0):

- per task, every presentation (train mode, augmented input) records the example's correctness from the
  model's *unmasked* outputs (``predicted = outputs.max(1)``, before the CL mask); statistics start empty at
  each task and again after each removal (``example_stats_train = {}``);
- at the start of within-task epochs e > 0 with e % 5 == 0 and e <= 20 (5, 10, 15, 20), an example's score is
  its number of forgetting events (1 -> 0 transitions) since the last reset, or the epochs per task if it was
  never correct in that window; the ``int(remove_n / (until / every))`` = 750 lowest-scored examples among
  those presented since the reset are removed for the rest of the task (3,000 of 10,000 in total);
- removed examples are never trained again, so they never enter the rehearsal buffer afterwards.

Reuses the sieving axis's ``ExampleStats`` and MEST's ``forgetting_counts`` / ``removal_order``.
Ties (most examples score 0): the script's ``np.argsort`` runs over the window's first-presentation order,
which the shuffled loader makes random, so tied examples are removed in no class order. Here ties go in a
seeded random order (a pure function of run seed, task and epoch, so a resume removes the same examples),
not by sample index: the prepared datasets are stored class by class, and index order would remove the
task's first class only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from spfde_core.continual.common import epochs_per_task, task_and_epoch
from spfde_core.continual.harness import ContinualHarness
from spfde_core.sieving.mest_forgetting import forgetting_counts, removal_order, tie_generator
from spfde_core.sieving.tracker import ExampleStats
from spfde_core.train.callbacks import StepOutput, TrainState


def removal_points(every: int, until: int) -> list[int]:
    """Within-task epochs whose start removes data: e > 0, e % every == 0, e <= until (the script's test)."""
    return [e for e in range(every, until + 1, every)]


def count_per_point(remove_per_task: int, every: int, until: int) -> int:
    """The script's ``int(remove_n / (int(remove_data_epoch) / sp_mask_update_freq))`` (0 without a point)."""
    return int(remove_per_task / (until / every)) if removal_points(every, until) else 0


def least_forgotten(stats: ExampleStats, never_learned_count: int, count: int, ties: torch.Generator) -> torch.Tensor:
    """The ``count`` lowest-scored examples presented since the last reset (ascending score, ties random)."""
    scores = forgetting_counts(stats, never_learned_count)
    candidates = stats.presentations > 0
    scores[~candidates] = torch.iinfo(torch.int64).max  # never presented in the window: never chosen
    count = min(count, int(candidates.sum()))
    return removal_order(scores, ties)[:count]


class DynamicDataRemoval:
    """Per-task forgetting-based removal; runs after ``ContinualHarness`` (which sets the task's active set)."""

    def __init__(self, cfg: DictConfig, state: TrainState, harness: ContinualHarness) -> None:
        d = cfg.continual.ddr
        self.harness = harness
        self.per_task = epochs_per_task(cfg)
        self.points = removal_points(int(d.every_epochs), int(d.until_epoch))
        self.count = count_per_point(int(d.remove_per_task), int(d.every_epochs), int(d.until_epoch))
        loader = state.train_loader
        # Refused before any compute: removals that would leave a task without a full batch (an empty or
        # batchless active set would stop the run mid-task). Sizes are known once the data is loaded.
        total = self.count * len(self.points)
        smallest = min(int(indices.numel()) for indices in harness.task_indices)
        least = int(cfg.train.batch_size) if cfg.train.drop_last else 1
        if total > smallest - least:
            raise ValueError(
                f"continual.ddr.remove_per_task: expected removals ({self.count} at each of {len(self.points)} "
                f"points = {total}) to leave at least {least} of the smallest task's {smallest} samples, "
                f"got {d.remove_per_task}"
            )
        self.stats = ExampleStats(int(loader.dataset_size), loader.labels.device)
        self.removed: list[torch.Tensor] = [torch.zeros(0, dtype=torch.int64) for _ in harness.task_indices]
        self.events: list[dict[str, int]] = []

    def on_epoch_start(self, state: TrainState) -> None:
        task, epoch_in_task = task_and_epoch(state.cfg, state.epoch)
        if epoch_in_task == 0:
            self.stats.clear()  # statistics are per task
        if epoch_in_task in self.points and self.count:
            ties = tie_generator(int(state.cfg.run.seed), "ddr", task, epoch_in_task)
            gone = least_forgotten(self.stats, self.per_task, self.count, ties).cpu()
            self.removed[task] = torch.cat([self.removed[task], gone])
            self.stats.clear()  # the script resets its statistics after each removal
            self.events.append({"epoch": state.epoch, "task": task, "removed": int(gone.numel())})
        if self.removed[task].numel():
            indices = self.harness.task_indices[task]
            kept = indices[~torch.isin(indices, self.removed[task])]
            state.train_loader.set_active(kept)

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        self.stats.observe(step)  # step.correct: argmax of the unmasked logits, as the script's `acc`

    def choices(self) -> dict[str, Any]:
        return {
            "removal_points_within_task": self.points,
            "removed_per_point": self.count,
            "score": "forgetting events since the last reset; never correct in the window = epochs per task",
            "statistics_reset": "at each task start and after each removal (script)",
            "correctness": "argmax of the unmasked logits of the augmented presentation (script)",
            "ties": "seeded random order (script: np.argsort over the shuffled first-presentation order)",
            "buffer": "not pruned; removed examples simply stop being offered to it",
        }

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        return {
            "continual_ddr": {
                "removed_per_task": [int(r.numel()) for r in self.removed],
                "removed_total": int(sum(r.numel() for r in self.removed)),
                "events": self.events,
                "choices": self.choices(),
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict(), "removed": [r.clone() for r in self.removed], "events": self.events}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self.removed = [r.cpu().clone() for r in state["removed"]]
        self.events = [dict(e) for e in state["events"]]
