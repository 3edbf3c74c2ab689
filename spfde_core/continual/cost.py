"""Training cost of a continual run, RigL-style, with what rehearsal, DDR and DGM add or save (docs/continual.md).

Convention: the cost meter's (``spfde_core/cost``, docs/cost.md): one training sample = forward + input gradient +
weight gradient of every op at the live masks, 1 FLOP = one multiply or add; this is RigL's counting (Evci et al.
2020, App. H: a step ~ 3x the forward at the live sparsity), which the SparCL authors follow (their App. D.1, per
the maintainer's answer in neu-spiral/SparCL issue #2; their code for it is not public). The ``cost`` block of the
record stays the meter's; this callback adds ``continual_cost``, whose baseline is the *dense DER++ run* of the same
config (every sample of the current task each epoch, the same replay passes per step), not the meter's dense run
over the whole dataset:

- current batch: samples x per-sample FLOPs at the live masks (the meter's steps, task by task);
- replay: every buffer sample forwarded and back-propagated through the same (sparse) model counts as a
  training sample (DER++: two buffer batches per step, ER/DER one; none on the first task);
- DDR: samples removed from a task are not trained; its saving is (task samples - trained samples) x the
  dense per-sample cost in the baseline, and the replay passes of the steps that no longer happen;
- DGM: what it *could* save is the weight-gradient FLOPs of the dropped entries of its layers
  (``(1 - kept) x`` their weight-gradient FLOPs, for current and buffer samples alike); the forward and the
  input gradients (needed by every earlier layer) are untouched. This implementation computes the dense
  weight gradient and then zeroes it, so nothing is saved in wall-clock; the record keeps both numbers
  (``training_flops`` what ran, ``dgm.weight_grad_flops_skippable`` what a gradient-sparse kernel could skip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spfde_core.continual.common import epochs_per_task, task_and_epoch
from spfde_core.continual.harness import ContinualHarness
from spfde_core.continual.replay import buffer_passes
from spfde_core.cost.flops import op_flops, sample_flops
from spfde_core.cost.layers import ModelProfile, profile_model
from spfde_core.cost.meter import active_counts, baseline_epoch_samples, input_shape_of
from spfde_core.data.types import Batch
from spfde_core.train.callbacks import StepOutput, TrainState

_KEYS = (
    "current_samples",
    "current_flops",
    "replay_samples",
    "replay_flops",
    "baseline_current_samples",
    "baseline_replay_samples",
    "dgm_skippable_wg",
)


class ContinualCost:
    """Per-step accounting of the continual run's training FLOPs (module docstring); the last continual callback."""

    def __init__(self, cfg: Any, harness: ContinualHarness, dgm: Any = None) -> None:
        self.harness = harness
        self.dgm = dgm
        self.passes = buffer_passes(cfg.continual.replay)
        self.replay_batch = min(int(cfg.train.batch_size), int(cfg.continual.buffer_size))
        """Samples of one buffer batch once the buffer holds them (mammoth's get_data: min(size, filled))."""
        self.per_task = epochs_per_task(cfg)
        self.totals = dict.fromkeys(_KEYS, 0)
        self.profile: ModelProfile | None = None
        self.dense_sample = 0
        self._cache: dict[tuple, tuple[int, dict[str, int]]] = {}
        """The last mask state's (per-sample FLOPs, per-layer weight-gradient FLOPs); one entry."""
        self._replay_before = 0
        self._step: tuple[int, dict[str, int]] | None = None

    def on_train_start(self, state: TrainState) -> None:
        self.profile = profile_model(state.model, input_shape_of(state.cfg))
        self.dense_sample = sample_flops(self.profile).total

    def _live(self, model: torch.nn.Module) -> tuple[int, dict[str, int]]:
        """(per-sample training FLOPs, per-layer weight-gradient FLOPs) at the live masks, cached per mask state."""
        key = tuple((id(m), m.weight_mask._version) for m in model.modules() if hasattr(m, "weight_mask"))
        if key not in self._cache:
            ops = op_flops(self.profile, active_counts(model))
            pairs = zip(self.profile.ops, ops, strict=True)
            wg = {op.module: s.weight_grad for op, s in pairs if op.kind in ("conv", "linear")}
            self._cache = {key: (sum(s.total for s in ops), wg)}
        return self._cache[key]

    def on_epoch_start(self, state: TrainState) -> None:
        task, _ = task_and_epoch(state.cfg, state.epoch)
        c = state.cfg.train
        task_size = int(self.harness.task_indices[task].numel())
        samples = baseline_epoch_samples(task_size, c.batch_size, c.drop_last, c.max_batches_per_epoch)
        self.totals["baseline_current_samples"] += samples
        if task > 0:  # the dense DER++ run replays at each of its steps from the second task on
            steps = -(-samples // c.batch_size)
            self.totals["baseline_replay_samples"] += steps * self.passes * self.replay_batch

    def on_batch_start(self, state: TrainState, batch: Batch) -> None:
        self._replay_before = self.harness.buffer_samples
        self._step = self._live(state.model)  # the masks the step trains with (read before the forward)

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        per_sample, wg = self._step
        b = len(step.indices)
        r = self.harness.buffer_samples - self._replay_before
        t = self.totals
        t["current_samples"] += b
        t["current_flops"] += b * per_sample
        t["replay_samples"] += r
        t["replay_flops"] += r * per_sample
        if self.dgm is not None and self.dgm.last_kept:
            dropped = sum((1 - kept) * wg.get(name, 0) for name, kept in self.dgm.last_kept.items())
            t["dgm_skippable_wg"] += int((b + r) * dropped)

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        t = self.totals
        training = t["current_flops"] + t["replay_flops"]
        baseline = (t["baseline_current_samples"] + t["baseline_replay_samples"]) * self.dense_sample
        return {
            "continual_cost": {
                "doc": "docs/continual.md (cost); convention of docs/cost.md = RigL's, as SparCL's authors count",
                "training_flops": training,
                "current_batch_flops": t["current_flops"],
                "replay_flops": t["replay_flops"],
                "baseline_dense_derpp_flops": baseline,
                "ratio_to_dense_replay_baseline": training / baseline if baseline else None,
                "samples": {
                    "current": t["current_samples"],
                    "replay": t["replay_samples"],
                    "baseline_current": t["baseline_current_samples"],
                    "baseline_replay": t["baseline_replay_samples"],
                    "not_trained_ddr_or_cap": t["baseline_current_samples"] - t["current_samples"],
                },
                "per_sample_dense_training_flops": self.dense_sample,
                "replay_passes_per_step": self.passes,
                "dgm": {
                    "weight_grad_flops_skippable": t["dgm_skippable_wg"],
                    "training_flops_if_skipped": training - t["dgm_skippable_wg"],
                    "saves": "weight-gradient FLOPs of the dropped entries of the DGM layers only",
                    "does_not_save": "forward, input gradients; here the dense weight gradient is computed and zeroed",
                },
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals = {k: int(v) for k, v in state["totals"].items()}
