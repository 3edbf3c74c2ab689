"""Static sparsity: a mask chosen once at initialisation and kept for the whole run.

- ``static_random``: uniformly random positions at each layer's target (the "static" baseline of
  the SET/RigL/ITOP tables), uniform layer-wise sparsity by default;
- ``static_erk``: the same with ERK layer-wise sparsity (Evci et al. 2020, Sec. 3);
- ``init=magnitude`` keeps the largest |w| of the fresh initialisation instead, which is how the
  MEST code builds its initial mask ("hardening", reference notes Sec. 1.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseContext, SparseTraining, magnitude_scores


@dataclass
class StaticConfig(SparseConfig):
    name: str = "static_random"
    init: str = "random"
    """Initial mask: random (uniform positions) or magnitude (largest |w| of the initialisation)."""


def initial_masks(ctx: SparseContext, init: str) -> None:
    """Set every layer's mask at its target: random positions or the top-|w| of the current weights."""
    for i, layer in enumerate(ctx.masks):
        full = torch.ones_like(layer.mask)
        if init == "random":
            empty = torch.zeros_like(layer.mask)
            layer.mask = ctx.scheme.grow(empty, layer.target, None, ctx.generator("init", i))
        elif init == "magnitude":
            layer.mask = ctx.scheme.prune(full, magnitude_scores(layer.weight), layer.target)
        else:
            raise ValueError(f"sparsity.init: expected random or magnitude, got {init!r}")


class Static:
    """Masks fixed after initialisation."""

    def __init__(self, cfg: StaticConfig) -> None:
        self.init = cfg.init

    def init_masks(self, ctx: SparseContext) -> None:
        initial_masks(ctx, self.init)

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        return False

    def after_backward(self, ctx: SparseContext) -> bool:
        return False

    def choices(self) -> dict:
        return {"init": self.init, "mask_updates": "none (static)"}


@SPARSITY_METHODS.register("static_random")
@SPARSITY_METHODS.register("static_erk")
def build_static(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Static mask fixed at init: random (uniform or ERK layer-wise, Evci et al. 2020) or top-|w|."""
    return [SparseTraining(Static(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="static_schema", node=StaticConfig)
