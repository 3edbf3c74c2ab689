"""Linear (progressive) freezing baseline, as Composer's LayerFreezing schedules it.

After ``start_fraction`` of training (Composer's ``freeze_start``, default 0.5) the share of
blocks frozen, front first, grows linearly to ``freeze_level`` (default 1.0) at the end of
training, updated at every epoch start. Composer freezes modules; here the unit is the model's
freezable block, and the classifier head is never frozen (a fully frozen network has nothing left
to train), so the last epochs freeze every block but the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from spfde_core.config import MethodConfig, domain
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.freezing.prefix import PrefixFreezing


@dataclass
class LinearConfig(MethodConfig):
    name: str = "linear"
    start_fraction: float = domain("[0, 1)", 0.5)
    """Share of training before freezing starts (Composer freeze_start)."""
    freeze_level: float = domain("(0, 1]", 1.0)
    """Share of blocks frozen at the end of training (Composer freeze_level)."""


def linear_count(num_blocks: int, epochs: int, start_fraction: float, freeze_level: float):
    """k(e) = floor(level * blocks * (p - start) / (1 - start)) for progress p = e / epochs >= start."""

    def frozen(e: int) -> int:
        progress = e / epochs
        if progress < start_fraction:
            return 0
        share = freeze_level * (progress - start_fraction) / (1 - start_fraction)
        return min(math.floor(share * num_blocks), num_blocks - 1)

    return frozen


@FREEZING_METHODS.register("linear")
def build_linear(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Linear freezing: the frozen share of blocks grows linearly after a start point (Composer LayerFreezing)."""
    frozen = linear_count(len(state.model.blocks), state.cfg.train.epochs, cfg.start_fraction, cfg.freeze_level)
    return [PrefixFreezing(cfg, frozen, choices={"unit": "model block", "head_never_frozen": True})]


ConfigStore.instance().store(group="freezing", name="linear_schema", node=LinearConfig)
