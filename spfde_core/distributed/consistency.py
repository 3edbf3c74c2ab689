"""The check that every rank holds the same run state: masks, frozen prefix, active set, step.

All of them are decided identically on every rank by construction (generators seeded by the run
seed and the epoch, all-reduced gradients, gathered per-sample statistics); this callback verifies
it. At every epoch start (after the methods changed masks, frozen blocks and the active set) and
every epoch end (after step-scheduled mask updates such as RigL's) it all-gathers one digest per
item and stops the run with a ``RankDivergenceError`` naming the item when ranks disagree.
Cost: hashing the masks (one byte per weight) twice per epoch.
"""

from __future__ import annotations

from typing import Any

import torch

from spfde_core.distributed.context import DistContext, tensor_digest


class RankDivergenceError(RuntimeError):
    """Ranks of one run hold different masks, frozen prefixes, active sets or step counters."""


def state_digests(state: Any) -> dict[str, str]:
    """One digest per checked item of the run state."""
    model = state.model
    masks = [buf for name, buf in model.named_buffers() if name.endswith("weight_mask")]
    active = getattr(state.train_loader, "_active", None)
    return {
        "masks": tensor_digest(masks),
        "frozen_blocks": str(int(getattr(model, "num_frozen_blocks", 0))),
        "active_set": "all" if active is None else tensor_digest([active]),
        "step": str(state.step),
    }


class RankConsistency:
    """Callback: verifies at every epoch start and end that all ranks agree (module docstring)."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.checks: list[tuple[int, str, dict[str, str]]] = []
        """(epoch, "start"/"end", digests) of every check passed, for tests and debugging."""

    def check(self, state: Any, when: str) -> None:
        digests = state_digests(state)
        gathered = self.ctx.gather_objects(digests)  # one collective for every item
        for item in digests:
            seen = [g[item] for g in gathered]
            if any(s != seen[0] for s in seen):
                raise RankDivergenceError(
                    f"ranks disagree on {item} at the {when} of epoch {state.epoch} (step {state.step}): {seen}"
                )
        self.checks.append((state.epoch, when, digests))

    def on_train_start(self, state: Any) -> None:
        self.check(state, "train start")

    def on_epoch_start(self, state: Any) -> None:
        self.check(state, "start")

    def on_epoch_end(self, state: Any) -> None:
        self.check(state, "end")


def masks_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.detach().cpu().clone() for name, buf in model.named_buffers() if name.endswith("weight_mask")}
