"""The continual-learning harness: one trainer callback that turns a run into a sequence of tasks.

No second training loop: ``train()`` / ``train_epoch()`` run as for any run over ``train.epochs`` =
num_tasks x epochs-per-task epochs, and this callback, using only the trainer's hooks, does what SparCL's
``main()`` / ``train()`` do around the batch loop (``main_sparse_train_w_data_gradient_efficient.py``):

- ``on_epoch_start``: the active training set is the current task's samples (``set_active``; DDR may
  shrink it afterwards), the loss sees other tasks' logits at -inf (``state.loss_logits``, --use_cl_mask),
  and at a task's first epoch the optimiser state is cleared (the script builds a new SGD per task);
- ``after_backward``: for tasks t > 0, the rehearsal term (``replay.py``) is back-propagated into the same
  gradients, before any gradient masking (the script calls ``loss.backward()`` on the sum, then masks);
- ``after_step``: the batch enters the reservoir buffer with the model's unmasked logits;
- ``on_epoch_end`` of a task's last epoch: per-task class-IL and task-IL accuracy (``metrics.py``), one pass
  over the test split that the cost meter charges as evaluation FLOPs (an ``eval_pass`` event).

Everything it keeps (buffer, accuracy matrix, counters) is in ``state_dict``, so the trainer's checkpoint
resumes a run exactly, across task boundaries too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spfde_core.continual.buffer import ReservoirBuffer
from spfde_core.continual.common import cl_generator, epochs_per_task, task_and_epoch
from spfde_core.continual.metrics import average_accuracy, average_forgetting, per_task_accuracy
from spfde_core.continual.replay import REPLAY_LOSSES, buffer_passes, replay_loss
from spfde_core.continual.splits import TaskSplit, make_split, task_logit_mask
from spfde_core.cost.events import CostEvent
from spfde_core.data.types import Batch
from spfde_core.train.callbacks import StepOutput, TrainState
from spfde_core.train.loop import autocast


class ContinualHarness:
    """Task schedule, logit mask, rehearsal buffer and per-task evaluation (module docstring)."""

    def __init__(self, cfg: DictConfig, state: TrainState) -> None:
        loader = state.train_loader
        if not hasattr(loader, "make_batch"):
            raise ValueError(f"data={cfg.data.name}: continual learning needs an in-memory dataset (TensorLoader)")
        self.cfg = cfg.continual
        self.seed = int(cfg.run.seed)
        self.batch_size = int(cfg.train.batch_size)
        self.per_task = epochs_per_task(cfg)
        o = cfg.optim
        self.recipe = (
            f"SGD lr {o.lr}, momentum {o.momentum}, weight decay {o.weight_decay}, schedule {o.schedule}; the "
            "script runs SGD(lr) with no momentum or weight decay and scheduler=None: its --lr-scheduler cosine "
            "and WARMUP flags never take effect (docs/continual.md)"
        )
        self.split: TaskSplit = make_split(int(loader.num_classes), int(self.cfg.num_tasks))
        labels = loader.labels
        self.task_indices = [self.split.indices(labels, t) for t in range(self.split.num_tasks)]
        self.buffer = ReservoirBuffer(int(self.cfg.buffer_size), self.split.num_classes, labels.device)
        self.labels = labels
        self.task = -1
        self.acc: list[list[float]] = []
        """Row t: class-IL accuracy on every task after training task t."""
        self.til_acc: list[list[float]] = []
        self.buffer_samples = 0
        """Buffer samples forwarded and back-propagated so far (the rehearsal's extra training work)."""
        self.steps_with_replay = 0
        self.epoch_replay = 0
        """Buffer samples trained this epoch, charged to the cost meter at the epoch's end (``replay_pass``)."""

    # -- hooks -------------------------------------------------------------------------------------
    def on_epoch_start(self, state: TrainState) -> None:
        task, epoch_in_task = task_and_epoch(state.cfg, state.epoch)
        self.task = task
        self.epoch_replay = 0
        state.train_loader.set_active(self.task_indices[task])
        if self.cfg.mask_other_tasks:
            add = task_logit_mask(self.split, task, state.device)
            state.loss_logits = lambda logits: logits + add  # the script's outputs + mask_add_on
        else:
            state.loss_logits = None
        if epoch_in_task == 0 and task > 0:
            state.optimizer.state.clear()  # a fresh SGD per task; a no-op with the script's momentum 0

    def after_backward(self, state: TrainState, batch: Batch) -> None:
        if self.task <= 0 or self.cfg.replay == "none" or self.buffer.filled == 0:
            return
        gen = cl_generator(self.seed, "replay", state.step)
        with autocast(state):
            loss, seen = replay_loss(
                state.model,
                self.cfg.replay,
                self.buffer,
                state.train_loader.make_batch,
                self.batch_size,
                float(self.cfg.alpha),
                float(self.cfg.beta),
                gen,
            )
        loss.backward()  # accumulates onto the current batch's gradient: d(mean CE + buffer terms)
        self.buffer_samples += seen
        self.steps_with_replay += 1
        self.epoch_replay += seen

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        if self.buffer.size == 0 or self.cfg.replay == "none":
            return
        gen = cl_generator(self.seed, "reservoir", state.step)
        self.buffer.add(step.indices, self.labels[step.indices], step.logits, gen)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.epoch_replay:  # the meter charges them at the live masks (one event per epoch, not per step)
            passes = {"forward": 1, "backward": 1}
            state.cost_events.append(
                CostEvent("replay_pass", state.epoch, state.step, samples=self.epoch_replay, passes=passes)
            )
        task, epoch_in_task = task_and_epoch(state.cfg, state.epoch)
        if epoch_in_task != self.per_task - 1:
            return
        cil, til = per_task_accuracy(state, self.split)
        # One inference pass over the whole test split, beside the trainer's own evaluation: the meter charges it
        # as evaluation FLOPs at the live masks (docs/continual.md, "Cost"), never as training.
        n = int(state.test_loader.num_samples)
        state.cost_events.append(CostEvent("eval_pass", state.epoch, state.step, samples=n))
        self.acc.append(cil)
        self.til_acc.append(til)
        log = state.epoch_log
        log["cl_task"] = task
        log["cl_avg_acc"] = average_accuracy(cil, task)
        log["cl_til_avg_acc"] = average_accuracy(til, task)
        log["cl_forgetting"] = average_forgetting(self.acc, task)
        log["cl_til_forgetting"] = average_forgetting(self.til_acc, task)
        if self.cfg.setting == "task_il" and "test_acc" in log:  # the headline top-1 is the setting's metric
            log["test_acc"] = log["cl_til_avg_acc"]

    # -- record and resume -------------------------------------------------------------------------
    def choices(self) -> dict[str, Any]:
        return {
            "split": f"{self.split.num_tasks} tasks x {self.split.classes_per_task} consecutive classes",
            "epochs_per_task": self.per_task,
            "class_il_eval": "argmax over all outputs, unseen tasks' classes included (script's evaluate)",
            "task_il_eval": "argmax over the sample's task's classes (script's mask_classes)",
            "forgetting": "mean over j < t of max over rows j..t of acc[.][j] - acc[t][j] (script; >= 0; rows "
            "before task j was trained are 0 in the script's matrix, here they are skipped)",
            "acc_matrix": "row t: every task's accuracy after task t; entries of untrained tasks (j > t) are "
            "informative only (the script leaves 0), no metric reads them",
            "evaluation": "at each task's last epoch (the script evaluates every epoch and overwrites row t: "
            "the same final row); one pass over the test split, in cost.evaluation_flops.method_passes",
            "logit_mask": "other tasks' classes at -inf in the current batch's CE only; buffer terms unmasked"
            if self.cfg.mask_other_tasks
            else "off",
            "buffer": "reservoir over every trained example (all tasks), stores index, label, unmasked logits",
            "buffer_batches": "augmented like the training set; replay only from task 1 on (script: t > 0)",
            "optimizer_state": "cleared at each task start (script: new SGD per task)",
            "optimizer_recipe": self.recipe,
            "replay_passes_per_step": buffer_passes(self.cfg.replay),
            "replay_loss": REPLAY_LOSSES[self.cfg.replay],
        }

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        last = len(self.acc) - 1
        return {
            "continual": {
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                "setting": self.cfg.setting,
                "tasks_done": len(self.acc),
                "acc_matrix": self.acc,
                "til_acc_matrix": self.til_acc,
                "final_avg_acc": average_accuracy(self.acc[-1], last) if self.acc else None,
                "final_til_avg_acc": average_accuracy(self.til_acc[-1], last) if self.til_acc else None,
                "final_forgetting": average_forgetting(self.acc, last) if self.acc else None,
                "final_til_forgetting": average_forgetting(self.til_acc, last) if self.til_acc else None,
                "buffer_samples_trained": self.buffer_samples,
                "steps_with_replay": self.steps_with_replay,
                "choices": self.choices(),
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer.state_dict(),
            "acc": self.acc,
            "til_acc": self.til_acc,
            "buffer_samples": self.buffer_samples,
            "steps_with_replay": self.steps_with_replay,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.acc = [list(r) for r in state["acc"]]
        self.til_acc = [list(r) for r in state["til_acc"]]
        self.buffer_samples = int(state["buffer_samples"])
        self.steps_with_replay = int(state["steps_with_replay"])
