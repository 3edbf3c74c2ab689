"""Typed cost events and the run shape a method's cost prediction reads.

``CostEvent``: work a method spends outside the plain training step, appended to
``state.cost_events`` where it happens and charged by the ``CostMeter`` (``meter.py``):

- ``dense_weight_grad``: a dense weight gradient of ``layers`` at one step (RigL's update steps);
- ``dense_weight_grad_every_step``: from this step on, a dense weight gradient of every conv/linear
  at every step (SNFS's dense momentum);
- ``scoring_pass``: ``samples`` samples through ``passes`` (forward / backward / hvp counts), at
  dense or live density (SNIP, GraSP).
- ``replay_pass``: ``samples`` rehearsal-buffer samples trained (forward + backward) at the live masks beside
  the steps' own batches (continual learning's ER / DER / DER++, docs/continual.md).
- ``eval_pass``: ``samples`` test samples a method evaluates (inference forward at the live masks) beside the
  trainer's own evaluation; charged as *evaluation* FLOPs, never training (continual learning's per-task
  evaluation at each task end, docs/continual.md).

Checkpoints hold them as plain dicts (``as_dict`` / ``from_dict``), so ``torch.load(weights_only=True)``
reads them and checkpoints written before the type existed still resume.

``RunShape``: what ``predict_cost`` knows about a run before it starts, with the per-sample costs a
method's ``predicted_overheads`` needs (each sparse config class implements it in its own file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spfde_core.cost.flops import dense_weight_grad_extra, scoring_flops
from spfde_core.cost.layers import ModelProfile

KINDS = ("dense_weight_grad", "dense_weight_grad_every_step", "scoring_pass", "replay_pass", "eval_pass")


@dataclass(frozen=True)
class CostEvent:
    """One method overhead, charged by the cost meter at (``epoch``, ``step``)."""

    kind: str
    """One of ``KINDS`` (module docstring)."""
    epoch: int
    step: int
    layers: list[str] | None = None
    """dense_weight_grad: the layers whose weight gradient is dense; None = every conv/linear."""
    samples: int | None = None
    """scoring_pass: samples scored; replay_pass: buffer samples trained; eval_pass: test samples evaluated;
    dense_weight_grad: batch size when charged outside its step."""
    passes: dict[str, int] | None = None
    """scoring_pass / replay_pass: ``{"forward": f, "backward": b, "hvp": h}`` per sample."""
    density: str | None = None
    """scoring_pass: ``dense`` scores the dense network; None = at the live masks."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cost event kind: expected one of {KINDS}, got {self.kind!r}")

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint form: set fields only."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostEvent:
        return cls(**data)

    @classmethod
    def coerce(cls, event: CostEvent | dict[str, Any]) -> CostEvent:
        return event if isinstance(event, CostEvent) else cls.from_dict(event)


@dataclass
class RunShape:
    """A run as the prediction sees it: per-epoch active counts of the sparse layers and the step layout."""

    profile: ModelProfile
    actives: list[dict[str, int]]
    """Per training epoch, active weights of each sparse layer between mask updates."""
    epochs: int
    steps_per_epoch: int
    samples_per_epoch: int
    batch_size: int
    num_classes: int
    frozen: list[int] | None = None
    """Per training epoch, the frozen prefix of the freezing plan (None: nothing frozen)."""
    _extra: dict[tuple[int, bool], int] = field(default_factory=dict, repr=False)

    def dense_weight_grad_extra(self, epoch: int, every_layer: bool = False) -> int:
        """Per-sample FLOPs a dense weight gradient adds at ``epoch``: of the sparse layers, or of every conv/linear."""
        key = (epoch, every_layer)
        if key not in self._extra:
            active = self.actives[epoch]
            layers = {op.module for op in self.profile.weight_ops()} if every_layer else set(active)
            k = self.frozen[epoch] if self.frozen else 0  # a frozen layer computes no weight gradient at all
            self._extra[key] = dense_weight_grad_extra(self.profile, active, k, layers)
        return self._extra[key]

    def dense_scoring_flops(self, passes: dict[str, int]) -> int:
        """Per-sample FLOPs of a scoring pass through the dense network."""
        return scoring_flops(self.profile, None, passes)


@dataclass(frozen=True)
class Overheads:
    """Predicted method overheads of a run, in FLOPs."""

    dense_weight_grad: int = 0
    scoring_passes: int = 0

    def as_dict(self) -> dict[str, int]:
        total = self.dense_weight_grad + self.scoring_passes
        return {"dense_weight_grad": self.dense_weight_grad, "scoring_passes": self.scoring_passes, "total": total}
