"""SET: Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018).

- initial mask: uniformly random positions at each layer's target (``distribution=uniform`` as in
  the MEST/SpFDE tables; SET's own Erdos-Renyi init is ``distribution=erk``);
- every ``update_every_epochs`` (1) epoch(s), at the start of the epoch, i.e. after each training
  epoch as in the paper, and *not at epoch 0*, where nothing has been learned yet; no update from
  ``end_fraction`` (1.0: all through training) of the epochs on;
- per layer drop the fraction ``drop_fraction`` (zeta = 0.3, the paper and its Keras code) of the
  active weights closest to zero, and regrow as many uniformly at random among inactive positions;
- regrown weights start at exactly 0 with zero momentum. The Keras code multiplies the weights by
  the post-removal mask before regrowing (``w * wm1Core``), so this holds for a just-dropped weight
  that is picked again too, and so it is here;
- ``regrow_dropped`` (true): the just-dropped positions are candidates for regrowth, as in every
  reference code (Keras ``rewireMask`` picks any zero position; sparse_learning, ITOP and RigL's
  ``SparseSETOptimizer`` the same); false excludes them in that update (the Intel/DSR code's
  ``grow_random(pruned_indices)``);
- ``drop_fraction_schedule``: constant (SET) or cosine decay to 0 at ``end_fraction``.

Decisions: "closest to zero" is the smallest |w| (the Keras code removes the fraction zeta of the
positive and, separately, of the negative weights; the two agree when the signs are balanced); the
drop count is ``floor(zeta * active)`` (RigL's SET); the drop is done per layer through the scheme,
so block/channel/pattern sparsity work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import domain
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseContext, SparseTraining
from spfde_core.sparsity.rigl import check_schedule, check_scheme, drop_smallest, scheduled_fraction
from spfde_core.sparsity.static import initial_masks


@dataclass
class SETConfig(SparseConfig):
    name: str = "set"
    drop_fraction: float = domain("[0, 1]", 0.3)
    """zeta: fraction of each layer's active weights removed and regrown per update (SET: 0.3)."""
    drop_fraction_schedule: str = "constant"
    """constant (SET) or cosine (decayed to 0 at end_fraction of training)."""
    update_every_epochs: int = domain("[1, inf)", 1)
    """Epochs between updates (SET: after every epoch)."""
    end_fraction: float = domain("[0, 1]", 1.0)
    """No update at or after this fraction of the epochs (SET: evolves until the end)."""
    regrow_dropped: bool = True
    """Just-dropped positions may be regrown in the same update (all reference codes); false excludes them."""
    init: str = "random"
    """Initial mask: random (SET) or magnitude."""

    def mutation_interval_epochs(self, epochs: int) -> int | None:
        return self.update_every_epochs


def random_grow_scores(kept: torch.Tensor, dropped: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform random scores that rank every ``dropped`` position below all other inactive ones."""
    keys = torch.rand(kept.shape, generator=generator, dtype=torch.float64).to(kept.device) + 1.0
    return keys.masked_fill(dropped, 0.0)


def set_update(
    ctx: SparseContext,
    drop_fraction: float,
    regrow_dropped: bool,
    key: tuple[Any, ...],
) -> None:
    """SET's drop-and-regrow on every layer; regrown weights (and their momentum) start at 0."""
    optimizer = ctx.state.optimizer
    for i, layer in enumerate(ctx.masks):
        generator = ctx.generator(*key, i)
        old = layer.mask.clone()
        kept = drop_smallest(ctx.scheme, old, layer.weight, drop_fraction)
        if regrow_dropped:
            new = ctx.scheme.grow(kept, layer.target, None, generator)
        else:
            new = ctx.scheme.grow(kept, layer.target, random_grow_scores(kept, old & ~kept, generator))
        regrown = new & ~kept
        with torch.no_grad():
            layer.weight.masked_fill_(regrown, 0.0)
            buffer = optimizer.state.get(layer.weight, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.masked_fill_(regrown, 0.0)
        layer.mask = new


class SET:
    """Magnitude drop, uniformly random regrowth, once per epoch."""

    def __init__(self, cfg: SETConfig) -> None:
        check_schedule(cfg.drop_fraction_schedule)
        check_scheme("set", cfg.scheme)  # numeric fields: their domains, checked in config.validate
        self.cfg = cfg

    def init_masks(self, ctx: SparseContext) -> None:
        initial_masks(ctx, self.cfg.init)

    def is_update_epoch(self, epoch: int, epochs: int) -> bool:
        end = self.cfg.end_fraction * epochs
        return epoch > 0 and epoch % self.cfg.update_every_epochs == 0 and epoch < end

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        epoch, epochs = ctx.state.epoch, ctx.state.cfg.train.epochs
        if not self.is_update_epoch(epoch, epochs):
            return False
        end = self.cfg.end_fraction * epochs
        fraction = scheduled_fraction(self.cfg.drop_fraction, self.cfg.drop_fraction_schedule, epoch, end)
        set_update(ctx, fraction, self.cfg.regrow_dropped, ("set", epoch))
        return True

    def after_backward(self, ctx: SparseContext) -> bool:
        return False

    def choices(self) -> dict[str, Any]:
        return {
            "drop": "smallest |w| per layer (Keras SET splits zeta over positive and negative weights)",
            "grow": "uniformly random among inactive positions",
            "regrow_dropped": self.cfg.regrow_dropped,
            "regrown_init": "zeros, also a just-dropped weight picked again (SET-Keras); momentum 0",
            "first_update_epoch": self.cfg.update_every_epochs,
            "update_every_epochs": self.cfg.update_every_epochs,
            "end_fraction": self.cfg.end_fraction,
            "drop_fraction_schedule": self.cfg.drop_fraction_schedule,
            "dense_gradient": "never",
            "init": self.cfg.init,
        }


@SPARSITY_METHODS.register("set")
def build_set(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """SET: every epoch drop the fraction closest to zero and regrow at random (Mocanu et al., Nat. Commun. 2018)."""
    return [SparseTraining(SET(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="set_schema", node=SETConfig)
