"""Learning-rate schedules as pure functions of (fractional) epoch.

One schedule per optimizer parameter group: SpFDE's layer-wise cosine annealing (Sec. 4.4 of the
reference notes) gives each block its own cosine over its own active epochs, so a freezing method
replaces a block's schedule with one whose ``total_epochs`` is that block's freeze epoch.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LRSchedule:
    """lr(t) for t in epochs (fractional when the LR is updated per iteration).

    Attributes:
        base_lr: peak learning rate.
        kind: cosine, multistep or constant.
        total_epochs: length of the schedule; cosine reaches ``min_lr`` at ``t = total_epochs``.
        min_lr: cosine floor (``eta_min`` of torch's CosineAnnealingLR).
        warmup_epochs: linear warmup from 0 to ``base_lr`` (then the main schedule starts at 0).
        milestones: multistep epochs (the LR is multiplied by ``gamma`` at each).
        gamma: multistep factor.
    """

    base_lr: float
    kind: str = "cosine"
    total_epochs: float = 1.0
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __call__(self, t: float) -> float:
        if t < self.warmup_epochs:
            return self.base_lr * t / self.warmup_epochs
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "multistep":
            return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)
        if self.kind == "cosine":
            # Same closed form as torch.optim.lr_scheduler.CosineAnnealingLR, which the MEST code
            # steps once per epoch; warmup time is taken out of the cosine's span.
            span = max(self.total_epochs - self.warmup_epochs, 1e-12)
            progress = min(max((t - self.warmup_epochs) / span, 0.0), 1.0)
            return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
        raise ValueError(f"unknown schedule kind {self.kind!r}")

    def ending_at(self, total_epochs: float) -> LRSchedule:
        """The same schedule compressed to end at ``total_epochs`` (a block's freeze epoch)."""
        return replace(self, total_epochs=total_epochs)


MEST_INTERVAL_EPOCHS = 5
"""MEST's mask-update interval (``sp_mask_update_freq``) in its 160-epoch CIFAR recipe."""
MEST_EPOCHS = 160


def delta_tau(epochs: int) -> int:
    """Default interval (SpFDE's Delta-tau) for a run of ``epochs``: MEST's 5 of 160 epochs, scaled.

    At the paper's 160 epochs this is exactly 5; a 30-epoch run mutates, sieves and freezes every
    epoch (round(0.94) = 1), so a reduced budget keeps the same number of intervals per run.
    """
    return max(1, round(MEST_INTERVAL_EPOCHS * epochs / MEST_EPOCHS))
