"""SGD with one parameter group per model block, each with its own LR schedule.

The optimizer is :class:`~spfde_core.ops.fused_update.MaskedSGD`: ``torch.optim.SGD`` (same state
dict) whose step also applies the sparse masks, fused where available (``train.update_impl``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from spfde_core.models.base import BlockModel
from spfde_core.ops.fused_update import MaskedSGD, select_impl
from spfde_core.train.schedules import LRSchedule


def build_optimizer(
    model: BlockModel, optim: DictConfig, epochs: int, update_impl: str = "auto"
) -> tuple[MaskedSGD, list[LRSchedule]]:
    """SGD (momentum, nesterov, weight decay on every parameter, as the MEST code) + schedules.

    One parameter group per block (``model.block_names`` order) so that freezing can stop a block
    and own its LR schedule without touching the others. ``update_impl`` (``train.update_impl``:
    auto, fused or eager) picks the step's implementation for the model's device (``select_impl``).
    """
    device = next(model.parameters()).device
    impl, reason = select_impl(update_impl, device)
    groups = [
        {"params": list(block.parameters()), "block": name}
        for name, block in model.named_blocks()
        if any(True for _ in block.parameters())
    ]
    optimizer = MaskedSGD(
        groups,
        lr=optim.lr,
        momentum=optim.momentum,
        nesterov=optim.nesterov,
        weight_decay=optim.weight_decay,
        impl=impl,
        fallback_reason=reason,
    )
    schedule = LRSchedule(
        base_lr=optim.lr,
        kind=optim.schedule,
        total_epochs=epochs,
        min_lr=optim.min_lr,
        warmup_epochs=optim.warmup_epochs,
        milestones=tuple(optim.milestones),
        gamma=optim.gamma,
    )
    return optimizer, [schedule for _ in groups]


def apply_schedules(optimizer: torch.optim.Optimizer, schedules: list[Callable[[float], float]], t: float) -> None:
    """Set each group's LR to its schedule's value at epoch ``t``."""
    for group, schedule in zip(optimizer.param_groups, schedules, strict=True):
        group["lr"] = schedule(t)
