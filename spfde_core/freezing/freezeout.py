"""FreezeOut (Brock et al., 2017, arXiv 1706.04983): per-layer cosine LR to zero, then frozen.

Block i of n (the unit here is the model's freezable block) stops at training fraction
t_i = s(t0 + (1 - t0) * i / (n - 1)), s = identity (linear), square or cube (cubic); its LR follows
a cosine from its initial LR to 0 at t_i * epochs, and once it reaches 0 the block is excluded
from the backward pass (here: frozen prefix; t_i grows with i, so the frozen set is a prefix).
With ``scale_lr`` the initial LR of block i is lr / t_i. Defaults follow the FreezeOut code's
CIFAR DenseNet runs: cubic, t0 = 0.8, scale_lr on (papers.md). The last block (the head) has
t = 1 and is never frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from spfde_core.config import ConfigError, MethodConfig, domain
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.freezing.prefix import PrefixFreezing, group_blocks
from spfde_core.train.schedules import LRSchedule


@dataclass
class FreezeOutConfig(MethodConfig):
    name: str = "freezeout"
    t0: float = domain("(0, 1]", 0.8)
    """Training fraction at which the first block stops (FreezeOut's t_0)."""
    how_scale: str = "cubic"
    """Spacing of the stop fractions: linear, squared or cubic."""
    scale_lr: bool = True
    """Divide each block's initial LR by its stop fraction t_i (FreezeOut's scale_lr)."""


POWERS = {"linear": 1, "squared": 2, "cubic": 3}


def stop_fractions(num_blocks: int, t0: float, how_scale: str) -> list[float]:
    if how_scale not in POWERS:
        raise ConfigError(f"freezing.how_scale: expected linear, squared or cubic, got {how_scale!r}")
    p = POWERS[how_scale]
    return [(t0 + (1 - t0) * i / (num_blocks - 1)) ** p for i in range(num_blocks)]


@FREEZING_METHODS.register("freezeout")
def build_freezeout(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """FreezeOut: each block's LR anneals to zero at its own time, then the block is frozen (Brock et al. 2017)."""
    epochs = state.cfg.train.epochs
    fractions = stop_fractions(len(state.model.blocks), cfg.t0, cfg.how_scale)
    stops = [f * epochs for f in fractions]

    def frozen(e: int) -> int:
        return min(sum(stop <= e for stop in stops), len(stops) - 1)

    def schedules(state) -> list:
        out = []
        for group, block in zip(state.schedules, group_blocks(state), strict=True):
            base = group.base_lr / fractions[block] if cfg.scale_lr else group.base_lr
            out.append(LRSchedule(base, "cosine", total_epochs=stops[block], min_lr=0.0))
        return out

    choices = {"stop_epochs": dict(zip(state.model.block_names, stops, strict=True)), "unit": "model block"}
    return [PrefixFreezing(cfg, frozen, schedules, choices)]


ConfigStore.instance().store(group="freezing", name="freezeout_schema", node=FreezeOutConfig)
