"""SNFS, sparse momentum (Dettmers & Zettlemoyer 2019), as ``TimDettmers/sparse_learning`` runs it.

At the end of every epoch (here: at the start of the next one, never at epoch 0), with the prune
rate ``p(t) = p_min + (p - p_min) / 2 * (1 + cos(pi * t / T))`` (``CosineDecay``: p = 0.5,
p_min = 0.005, t = steps done, T = all training steps):

1. statistics: each layer's mean |momentum| over its active weights, normalised over layers;
2. prune: each layer removes ``ceil(p * active)`` smallest-|w| active weights (``magnitude_prune``;
   a layer already denser than 80% whose momentum share is above average prunes at most its
   sparsity, sparse_learning's ``adjust_prune_rate``);
3. redistribute: the total removed count is split over layers in proportion to their momentum
   share, each layer capped at full density with the excess handed to the others in proportion
   too (water filling), rounded by largest remainder (ties to the earlier layer): the total active
   count is preserved exactly;
4. regrow: within each layer, the inactive positions (just-pruned ones included, as
   ``momentum_growth`` does) with the largest |momentum|.

The momentum is that of the *dense* gradient. sparse_learning never masks gradients, so its SGD
momentum buffer is dense; this engine masks gradients (and, with ``reset_momentum``, the buffer),
so the optimizer's buffer is zero at inactive positions and cannot rank growth. SNFS therefore
keeps its own dense buffer, updated in ``after_backward`` with the optimizer's own rule
(``buf = mu * buf + (1 - dampening) * (g + wd * w)``, the dense gradient every step: the cost
meter must charge SNFS a dense gradient at every step, see ``choices()``). It is checkpointed.

``regrown_momentum`` (dense): a regrown weight starts at 0 with the dense momentum it has in
sparse_learning (copied into the optimizer's buffer); ``zero`` starts it at zero momentum.

Departures from sparse_learning (documented): the cap is full density, not 0.99 of it; the
residual is handed out in proportion to momentum, not evenly; counts are exact (no
``adjusted_growth`` smoothing); budget moves between layers, so only ``scheme=unstructured``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import domain
from spfde_core.cost.events import CostEvent, Overheads, RunShape
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseContext, SparseTraining, magnitude_scores
from spfde_core.sparsity.static import initial_masks


@dataclass
class SNFSConfig(SparseConfig):
    name: str = "snfs"
    prune_rate: float = domain("[0, 1]", 0.5)
    """Initial prune rate p: fraction of each layer's active weights removed per update (sparse_learning)."""
    prune_rate_min: float = domain("[0, 1]", 0.005)
    """Cosine decay floor of p (sparse_learning CosineDecay eta_min)."""
    update_every_epochs: int = domain("[1, inf)", 1)
    """Epochs between updates (SNFS: every epoch)."""
    end_fraction: float = domain("[0, 1]", 1.0)
    """No update at or after this fraction of the epochs (SNFS: to the end)."""
    regrown_momentum: str = "dense"
    """dense: a regrown weight gets the dense momentum (sparse_learning); zero: zero momentum."""
    init: str = "random"
    """Initial mask: random (sparse_learning 'constant' init: uniform per-layer density) or magnitude."""

    def mutation_interval_epochs(self, epochs: int) -> int | None:
        return self.update_every_epochs

    def predicted_overheads(self, run: RunShape) -> Overheads:
        """The dense momentum: a dense weight gradient of every conv/linear at every step, every sample.

        Counted at the initial allocation; SNFS moves weights between layers, the meter reads the real one.
        """
        per_epoch = [run.dense_weight_grad_extra(e, every_layer=True) for e in range(run.epochs)]
        return Overheads(dense_weight_grad=run.samples_per_epoch * sum(per_epoch))


def check_unstructured(method: str, scheme: str) -> None:
    if scheme != "unstructured":
        raise ValueError(f"{method} moves weights between layers: only sparsity.scheme=unstructured, got {scheme!r}")


def proportional_allocation(total: int, weights: list[float], caps: list[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` with ``alloc[i] <= caps[i]``.

    Water filling: a layer whose share exceeds its cap gets the cap and the rest is split again
    over the others; then floors plus largest remainders (ties to the lower index), so the sum is
    exactly ``total``. Non-finite or negative weights count as 0; if all open layers weigh 0, the
    rest is split in proportion to the remaining capacity.
    """
    if total > sum(caps):
        raise ValueError(f"cannot place {total} weights in capacity {sum(caps)}")
    n = len(weights)
    w = [x if math.isfinite(x) and x > 0 else 0.0 for x in weights]
    shares = [0.0] * n
    open_ = [i for i in range(n) if caps[i] > 0]
    remaining = float(total)
    while open_ and remaining > 0:
        basis = [w[i] for i in open_] if sum(w[i] for i in open_) > 0 else [float(caps[i]) for i in open_]
        norm = sum(basis)
        proposal = {i: remaining * b / norm for i, b in zip(open_, basis, strict=True)}
        full = [i for i in open_ if proposal[i] >= caps[i]]
        if not full:
            for i in open_:
                shares[i] = proposal[i]
            break
        for i in full:
            shares[i] = float(caps[i])
            remaining -= caps[i]
        open_ = [i for i in open_ if i not in full]
    alloc = [min(int(math.floor(s)), caps[i]) for i, s in enumerate(shares)]
    left = total - sum(alloc)
    order = sorted(range(n), key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
    while left > 0:
        progressed = False
        for i in order:
            if left == 0:
                break
            if alloc[i] < caps[i]:
                alloc[i] += 1
                left -= 1
                progressed = True
        if not progressed:  # pragma: no cover - excluded by the capacity check above
            raise AssertionError("allocation made no progress")
    return alloc


def prune_rate_at(p0: float, p_min: float, t: float, t_max: float) -> float:
    """sparse_learning's CosineDecay: ``p_min + (p0 - p_min) / 2 * (1 + cos(pi * t / t_max))``."""
    t = min(max(t, 0.0), t_max)
    return p_min + (p0 - p_min) * 0.5 * (1.0 + math.cos(math.pi * t / t_max)) if t_max > 0 else p0


def snfs_plan(
    actives: list[int],
    sizes: list[int],
    momentum_means: list[float],
    prune_rate: float,
) -> tuple[list[int], list[int]]:
    """Per layer ``(removed, regrowth)`` counts of one SNFS update; sum(removed) == sum(regrowth)."""
    w = [m if math.isfinite(m) else 0.0 for m in momentum_means]
    total_w = sum(w)
    shares = [x / total_w for x in w] if total_w > 0 else [1.0 / len(w)] * len(w)
    removed = []
    for active, size, share in zip(actives, sizes, shares, strict=True):
        rate = prune_rate
        sparsity = 1.0 - active / size
        if sparsity < 0.2 and share > 1.0 / len(w):  # sparse_learning adjust_prune_rate
            rate = min(sparsity, rate)
        removed.append(min(math.ceil(rate * active), active))
    caps = [size - active + r for active, size, r in zip(actives, sizes, removed, strict=True)]
    regrowth = proportional_allocation(sum(removed), shares, caps)
    return removed, regrowth


class SNFS:
    """Sparse momentum: magnitude prune, momentum redistribution across layers, momentum growth."""

    def __init__(self, cfg: SNFSConfig) -> None:
        check_unstructured("snfs", cfg.scheme)
        if cfg.regrown_momentum not in ("dense", "zero"):
            raise ValueError(f"sparsity.regrown_momentum: expected dense or zero, got {cfg.regrown_momentum!r}")
        self.cfg = cfg
        self.momentum: dict[str, torch.Tensor] = {}

    def init_masks(self, ctx: SparseContext) -> None:
        initial_masks(ctx, self.cfg.init)
        # The dense momentum needs the dense weight gradient at every step: the cost meter charges it.
        ctx.state.cost_events.append(CostEvent("dense_weight_grad_every_step", 0, ctx.state.step))

    # ---- dense momentum ----------------------------------------------------------------------
    @staticmethod
    def _group(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> dict[str, Any]:
        for group in optimizer.param_groups:
            if any(p is weight for p in group["params"]):
                return group
        raise KeyError("sparse weight not found in the optimizer's parameter groups")

    def needs_dense_gradient(self, ctx: SparseContext) -> bool:
        """Every step: the dense momentum reads the full gradient (so sparse kernels are never used)."""
        return True

    @torch.no_grad()
    def after_backward(self, ctx: SparseContext) -> bool:
        for layer in ctx.masks:
            grad = layer.weight.grad
            if grad is None:
                continue
            group = self._group(ctx.state.optimizer, layer.weight)
            d = grad.detach().float()
            wd = group.get("weight_decay", 0.0)
            if wd:
                d = d + wd * layer.weight.detach().float()
            mu, dampening = group.get("momentum", 0.0), group.get("dampening", 0.0)
            buf = self.momentum.get(layer.name)
            if buf is None or not mu:
                self.momentum[layer.name] = d.clone()
            else:
                buf.mul_(mu).add_(d, alpha=1.0 - dampening)
        return False

    # ---- update ------------------------------------------------------------------------------
    def is_update_epoch(self, epoch: int, epochs: int) -> bool:
        end = self.cfg.end_fraction * epochs
        return epoch > 0 and epoch % self.cfg.update_every_epochs == 0 and epoch < end

    def prune_rate(self, ctx: SparseContext) -> float:
        return prune_rate_at(self.cfg.prune_rate, self.cfg.prune_rate_min, ctx.state.step, ctx.total_steps)

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        if not self.is_update_epoch(ctx.state.epoch, ctx.state.cfg.train.epochs):
            return False
        layers = list(ctx.masks)
        momenta = [
            self.momentum.get(layer.name, torch.zeros_like(layer.weight, dtype=torch.float32)) for layer in layers
        ]
        actives = [int(layer.mask.sum()) for layer in layers]
        means = [
            float(m.abs()[layer.mask].mean()) if a else 0.0
            for m, layer, a in zip(momenta, layers, actives, strict=True)
        ]
        removed, regrowth = snfs_plan(actives, [layer.mask.numel() for layer in layers], means, self.prune_rate(ctx))
        optimizer = ctx.state.optimizer
        for layer, m, active, r, g in zip(layers, momenta, actives, removed, regrowth, strict=True):
            n = layer.mask.numel()
            old = layer.mask.clone()
            kept = ctx.scheme.prune(old, magnitude_scores(layer.weight), 1.0 - (active - r) / n)
            new = ctx.scheme.grow(kept, 1.0 - (active - r + g) / n, m.square().to(old.device))
            layer.target = 1.0 - int(new.sum()) / n
            layer.mask = new
            buffer = optimizer.state.get(layer.weight, {}).get("momentum_buffer")
            if self.cfg.regrown_momentum == "dense" and buffer is not None:
                fresh = new & ~old
                buffer[fresh] = m.to(buffer.device, buffer.dtype)[fresh]
        return True

    def choices(self) -> dict[str, Any]:
        return {
            "prune": "ceil(p * active) smallest |w| per layer, p cosine-decayed per step (sparse_learning)",
            "redistribution": "total removed split by mean |dense momentum| of active weights, capped at "
            "full density, excess water-filled proportionally; exact counts",
            "grow": "largest |dense momentum| among inactive positions (just-pruned included)",
            "momentum": "own dense SGD momentum buffer (optimizer's rule) updated every step",
            "dense_gradient": "every step (the dense momentum needs it)",
            "regrown_momentum": self.cfg.regrown_momentum,
            "first_update_epoch": self.cfg.update_every_epochs,
            "update_every_epochs": self.cfg.update_every_epochs,
            "end_fraction": self.cfg.end_fraction,
            "scheme": "unstructured only",
            "init": self.cfg.init,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": dict(self.momentum)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.momentum = dict(state["momentum"])  # the checkpoint loads onto the run's device


@SPARSITY_METHODS.register("snfs")
def build_snfs(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Sparse momentum: prune by |w|, redistribute and regrow by momentum (Dettmers & Zettlemoyer, 2019)."""
    return [SparseTraining(SNFS(cfg), cfg, state)]


build_snfs.dense_gradient_every_step = True  # never on the sparse kernels: the layout probe need not time them


ConfigStore.instance().store(group="sparsity", name="snfs_schema", node=SNFSConfig)
