"""Per-example training statistics for data sieving (Toneva et al. 2019 forgetting events).

Every statistic is a tensor sized to the *full* training set, indexed by original sample index,
and kept on the loader's device; ``update`` is fed from ``after_step`` with the per-sample losses
and correctness of the batch (train mode, augmented inputs: the presentation-level statistics the
MEST code records, reference notes Sec. 2.3). No host synchronisation happens per step.

A *forgetting event* is a 1 -> 0 transition of the correctness flag between two consecutive
presentations of the same example. Two counts are kept:

- ``forgets``: over the whole tracked history (MEST's one-shot removal);
- ``interval_forgets``: only between two presentations that both fall in the current interval
  (SpFDE's per-interval count, re-collected every interval "so newly added samples are treated
  equally"). ``reset_interval`` starts a new interval; the first presentation after it is
  compared with nothing, so a transition across the interval boundary is never counted.

``ever_learned`` / ``interval_learned`` mark examples classified correctly at least once over the
history / in the current interval; examples without that flag are "never learned".
"""

from __future__ import annotations

from typing import Any

import torch

from spfde_core.train.callbacks import StepOutput

_FLOAT = ("last_loss",)
_BOOL = ("last_correct", "ever_learned", "interval_learned")
_LONG = ("presentations", "forgets", "interval_presentations", "interval_forgets")
FIELDS = _FLOAT + _BOOL + _LONG


class ExampleStats:
    """Per-example statistics over the full training set (see the module docstring).

    Attributes (all shape ``(num_samples,)``):
        last_loss: float32 loss at the latest presentation (NaN before the first).
        last_correct: bool correctness at the latest presentation (False before the first).
        presentations: int64 presentations so far.
        forgets: int64 forgetting events over the whole tracked history.
        ever_learned: bool, correct at least once over the history.
        interval_presentations: int64 presentations in the current interval.
        interval_forgets: int64 forgetting events between presentations of the current interval.
        interval_learned: bool, correct at least once in the current interval.
    """

    def __init__(self, num_samples: int, device: str | torch.device = "cpu") -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples = int(num_samples)
        self.device = torch.device(device)
        self.last_loss = torch.full((num_samples,), float("nan"), device=self.device)
        for name in _BOOL:
            setattr(self, name, torch.zeros(num_samples, dtype=torch.bool, device=self.device))
        for name in _LONG:
            setattr(self, name, torch.zeros(num_samples, dtype=torch.int64, device=self.device))

    def update(self, indices: torch.Tensor, losses: torch.Tensor, correct: torch.Tensor) -> None:
        """Record one presentation of each sample in ``indices`` (each index at most once per call)."""
        idx = indices.to(self.device, torch.int64)
        correct = correct.to(self.device, torch.bool)
        forgot = self.last_correct[idx] & ~correct  # last_correct is False before the first presentation
        in_interval = self.interval_presentations[idx] > 0
        self.forgets.index_add_(0, idx, forgot.long())
        self.interval_forgets.index_add_(0, idx, (forgot & in_interval).long())
        ones = torch.ones_like(idx)
        self.presentations.index_add_(0, idx, ones)
        self.interval_presentations.index_add_(0, idx, ones)
        self.last_correct[idx] = correct
        self.ever_learned[idx] |= correct
        self.interval_learned[idx] |= correct
        self.last_loss[idx] = losses.to(self.device, torch.float32)

    def observe(self, step: StepOutput) -> None:
        """``update`` from a trainer ``StepOutput``."""
        self.update(step.indices, step.losses, step.correct)

    def reset_interval(self) -> None:
        """Start a new interval: interval counts and flags back to zero (history kept)."""
        self.interval_presentations.zero_()
        self.interval_forgets.zero_()
        self.interval_learned.zero_()

    def clear(self) -> None:
        """Forget everything (as after MEST's one-shot removal)."""
        self.last_loss.fill_(float("nan"))
        for name in _BOOL + _LONG:
            getattr(self, name).zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, **{name: getattr(self, name).cpu().clone() for name in FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_samples"]) != self.num_samples:
            raise ValueError(f"statistics are for {state['num_samples']} samples, this run has {self.num_samples}")
        for name in FIELDS:
            getattr(self, name).copy_(state[name].to(self.device))
