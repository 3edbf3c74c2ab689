"""The trainer's extension points: callbacks called at named moments of the loop.

A callback implements any subset of the hooks below (missing ones are skipped), plus optional
``state_dict()`` / ``load_state_dict()`` so its state is checkpointed and a resumed run continues
exactly. What each hook may change (AlgoPerf-style contracts):

- ``on_train_start(state)``: once, before the first epoch (also after a resume).
- ``on_epoch_start(state)``: before the epoch's first batch; may change the active sample set
  (``state.train_loader.set_active``), masks, frozen blocks and per-group LR schedules.
- ``on_batch_start(state, batch)``: before the forward pass; must not change the batch.
- ``after_backward(state, batch)``: gradients exist, the optimizer has not stepped; may edit
  gradients (sparse-gradient masking), never weights.
- ``after_step(state, step)``: the optimizer stepped; may edit weights (re-apply masks) and read
  the per-sample losses / correctness / logits of the batch in ``step`` (sieving statistics).
- ``on_epoch_end(state)``: after the epoch's training and its evaluation; reads and adds to
  ``state.epoch_log``.
- ``on_train_end(state)``: once, after the last epoch.
- ``record(state, run_dir) -> dict``: optional; blocks to add to the run record (a method may
  also write side files, e.g. per-update CSVs, into ``run_dir``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from spfde_core.data.types import Batch, Loader


class StepOutput(NamedTuple):
    """What one optimisation step saw, per sample (all detached)."""

    indices: torch.Tensor
    """(B,) original sample indices."""
    losses: torch.Tensor
    """(B,) float32 per-sample loss (before label smoothing is averaged away)."""
    correct: torch.Tensor
    """(B,) bool: top-1 prediction equals the label."""
    logits: torch.Tensor
    """(B, classes) float32 logits."""


@dataclass
class TrainState:
    """Everything a callback may read; the trainer owns it and checkpoints what is not derived."""

    cfg: DictConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedules: list[Callable[[float], float]]
    """One LR schedule (epoch -> lr, e.g. an ``LRSchedule``) per optimizer parameter group (one group
    per model block). Not checkpointed: a callback that replaces schedules does it in ``on_train_start``,
    from its config, so a resumed run gets the same ones."""
    train_loader: Loader
    test_loader: Loader
    device: torch.device
    epoch: int = 0
    """Current epoch (0-based); after training, equals the number of epochs run."""
    step: int = 0
    """Optimisation steps taken so far over the whole run."""
    epoch_log: dict[str, Any] = field(default_factory=dict)
    """The current epoch's measurements (train loss/acc, test acc, times, ...)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every finished epoch's log, in order (the curve)."""
    elapsed_s: float = 0.0
    """Wall-clock seconds of training + evaluation so far, summed over resumed segments."""
    train_s: float = 0.0
    """Seconds spent in training steps only (throughput denominator), summed over segments."""
    images_trained: int = 0
    """Training images processed so far (for throughput)."""
    resumed_from_epoch: list[int] = field(default_factory=list)
    """Epochs at which this run was resumed from a checkpoint."""
    started_at: str = ""
    """UTC time the run first started (kept across resumes)."""
    cost_events: list[Any] = field(default_factory=list)
    """Work a method spends outside the plain training step, for the cost meter to charge where it
    occurs: ``spfde_core.cost.events.CostEvent`` s, e.g. RigL's dense gradient at update steps or
    SNIP/GraSP's scoring passes. Checkpointed (as dicts)."""
    epoch_loader: Any = None
    """Replaces ``train_loader`` for this epoch's training pass only, or None: the feature cache's loader of
    cached frozen-prefix maps (its batches start at block ``start_block``). Set at epoch start, not checkpointed."""
    loss_logits: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Maps the model's logits to those the current batch's loss sees, or None (the logits themselves): continual
    learning puts other tasks' classes at -inf (SparCL's --use_cl_mask). ``StepOutput`` keeps the model's own
    logits. Set at epoch start, not checkpointed."""


class Callback(Protocol):
    """Documentation of the hook signatures; callbacks need not inherit from it."""

    def on_train_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def on_batch_start(self, state: TrainState, batch: Batch) -> None: ...
    def after_backward(self, state: TrainState, batch: Batch) -> None: ...
    def after_step(self, state: TrainState, step: StepOutput) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "on_batch_start",
    "after_backward",
    "after_step",
    "on_epoch_end",
    "on_train_end",
)

MethodFactory = Callable[[DictConfig, TrainState], list[Any]]
"""How a method on one axis (sparsity, freezing, sieving) is built: its config node and the
trainer state in, its callbacks out. Registered in that axis's registry under the config name."""


class CallbackList:
    """Calls each hook on every callback that defines it, in list order."""

    def __init__(self, callbacks: Sequence[Any]) -> None:
        self.callbacks = list(callbacks)
        # Resolve the bound methods once: the per-batch hooks sit on the hot path.
        self._hooks = {hook: [getattr(cb, hook) for cb in self.callbacks if hasattr(cb, hook)] for hook in HOOKS}

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if hook not in HOOKS:
            raise AttributeError(hook)
        methods = self._hooks[hook]

        def call(*args: Any) -> None:
            for method in methods:
                method(*args)

        return call

    def _stateful(self) -> dict[str, Any]:
        """Stateful callbacks keyed by class name and occurrence (stable when stateless ones are added)."""
        keyed: dict[str, Any] = {}
        for cb in self.callbacks:
            if hasattr(cb, "state_dict"):
                name = type(cb).__name__
                n = sum(key.startswith(name + "#") for key in keyed)
                keyed[f"{name}#{n}"] = cb
        return keyed

    def state_dict(self) -> dict[str, Any]:
        """States of the stateful callbacks."""
        return {key: cb.state_dict() for key, cb in self._stateful().items()}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        stateful = self._stateful()
        if set(states) != set(stateful):
            raise ValueError(f"checkpoint holds callback states {sorted(states)} but this run has {sorted(stateful)}")
        for key, cb in stateful.items():
            cb.load_state_dict(states[key])
