"""DSR: Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019), as Intel's code runs it.

Read from the code vendored in ``TimDettmers/sparse_learning`` (``imagenet/baseline/main.py`` with
``--rewire --threshold-prune --rewire-scaling``; ``parameterized_tensors.py``) and the WRN-28-2
CIFAR-10 job list (``experiments/wrnet_experiments.yaml``, ``learning_schedules/wrnet_schedule.yaml``):

- every P steps (from step P; P = 100, 200, 400, 800 from epochs 0, 25, 80, 140 of 200, stored as
  fractions 0, 0.125, 0.4, 0.7 of training) until ``stop_fraction`` (epoch 190 of 200 = 0.95):
- prune every active weight with |w| < H, one global threshold over all sparse layers (a layer
  would lose all its weights: its largest one stays, the code keeps one too);
- adapt H for the next update (Intel's rule, tolerance delta = 0.1): if more than (1 + delta) N
  weights were pruned, H /= 2; if fewer than (1 - delta) N, H *= 2. H starts at 0.001 and N is
  ``--n-prune-params 20000`` for WRN-28-2, i.e. 1.37% of its 1,462,272 sparse conv weights:
  ``prune_fraction`` = 0.0137 of all sparse-layer weights (``prune_count`` sets N directly);
- regrow exactly the number pruned, allocated to layers in proportion to their surviving active
  counts (``--rewire-scaling``), at uniformly random inactive positions, excluding the ones pruned
  in this update (``grow_random(pruned_indices)``); new weights start at 0.

Decisions: the allocation is rounded by largest remainder (ties to the earlier layer) instead of the
code's ``np.round`` plus a random fix-up, and a layer without room hands its share to the others, so
the total active count is preserved exactly (the code logs a discrepancy instead); momentum of new
weights is zeroed (``reset_momentum``; the Intel code leaves the masked-out momentum to decay); the
update runs before this step's optimizer step (the code: after it). Budget moves between layers,
so only ``scheme=unstructured``. The threshold H is checkpointed.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import domain
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseContext, SparseTraining
from spfde_core.sparsity.snfs import check_unstructured, proportional_allocation
from spfde_core.sparsity.static import initial_masks


@dataclass
class DSRConfig(SparseConfig):
    name: str = "dsr"
    update_interval_steps: list[int] = domain("[1, inf)", factory=lambda: [100, 200, 400, 800])
    """Steps between reallocations in each phase (Intel WRN schedule: 100/200/400/800)."""
    interval_phase_fractions: list[float] = domain("[0, 1]", factory=lambda: [0.125, 0.4, 0.7])
    """Phase boundaries as fractions of the epochs (Intel WRN: epochs 25, 80, 140 of 200)."""
    stop_fraction: float = domain("[0, 1]", 0.95)
    """No reallocation from this fraction of the epochs on (Intel WRN: --stop-rewire-epoch 190 of 200)."""
    initial_threshold: float = domain("(0, inf)", 0.001)
    """H at the start (Intel code: 1e-3)."""
    prune_fraction: float = domain("[0, 1]", 0.0137)
    """N as a fraction of all sparse-layer weights (20000 / 1,462,272 for WRN-28-2)."""
    prune_count: int | None = domain("[1, inf)", None)
    """N as a count of weights (Intel --n-prune-params); overrides prune_fraction."""
    tolerance: float = domain("[0, inf)", 0.1)
    """delta: H is halved above (1 + delta) N pruned weights and doubled below (1 - delta) N (Intel code)."""
    init: str = "random"
    """Initial mask: random (Intel code) or magnitude."""


def adapt_threshold(threshold: float, pruned: int, target: float, tolerance: float) -> float:
    """Intel's rule: halve H if too many were pruned, double it if too few, else keep it."""
    if pruned > (1.0 + tolerance) * target:
        return threshold / 2.0
    if pruned < (1.0 - tolerance) * target:
        return threshold * 2.0
    return threshold


def threshold_prune(mask: torch.Tensor, weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """Active weights with |w| >= H stay; if none would, the largest |w| stays (Intel keeps one)."""
    magnitude = weight.detach().abs()
    kept = mask & (magnitude >= threshold)
    if not kept.any() and mask.any():
        ranked = torch.where(mask, magnitude, torch.full_like(magnitude, -1.0)).flatten()
        kept = torch.zeros_like(mask).flatten()
        kept[int(torch.argmax(ranked))] = True
        kept = kept.view(mask.shape)
    return kept


def random_grow_excluding(
    kept: torch.Tensor, excluded: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """Activate ``count`` uniformly random positions that are inactive in ``kept`` and not ``excluded``."""
    candidates = (~kept & ~excluded).flatten().nonzero().squeeze(1)
    if count > candidates.numel():
        raise ValueError(f"cannot grow {count} weights in {candidates.numel()} free positions")
    picked = torch.randperm(candidates.numel(), generator=generator)[:count].to(candidates.device)
    grown = kept.clone().flatten()
    grown[candidates[picked]] = True
    return grown.view(kept.shape)


class DSR:
    """Global adaptive-threshold pruning, regrowth in proportion to each layer's surviving weights."""

    def __init__(self, cfg: DSRConfig) -> None:
        check_unstructured("dsr", cfg.scheme)
        intervals, phases = list(cfg.update_interval_steps), list(cfg.interval_phase_fractions)
        if len(intervals) != len(phases) + 1 or min(intervals) < 1:
            raise ValueError(
                "sparsity.update_interval_steps: need one positive interval per phase "
                f"({len(phases) + 1} for {len(phases)} interval_phase_fractions), got {intervals}"
            )
        self.cfg = cfg
        self.threshold = float(cfg.initial_threshold)
        self.last_pruned = 0

    def init_masks(self, ctx: SparseContext) -> None:
        initial_masks(ctx, self.cfg.init)

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        return False

    def interval(self, epoch: int, epochs: int) -> int:
        phase = bisect.bisect_right([f * epochs for f in self.cfg.interval_phase_fractions], epoch)
        return int(self.cfg.update_interval_steps[phase])

    def is_update_step(self, step: int, epoch: int, epochs: int) -> bool:
        return step > 0 and step % self.interval(epoch, epochs) == 0 and epoch < self.cfg.stop_fraction * epochs

    def prune_target(self, ctx: SparseContext) -> float:
        if self.cfg.prune_count is not None:
            return float(self.cfg.prune_count)
        return self.cfg.prune_fraction * sum(layer.mask.numel() for layer in ctx.masks)

    def after_backward(self, ctx: SparseContext) -> bool:
        state = ctx.state
        if not self.is_update_step(state.step, state.epoch, state.cfg.train.epochs):
            return False
        layers = list(ctx.masks)
        olds = [layer.mask.clone() for layer in layers]
        kepts = [threshold_prune(old, layer.weight, self.threshold) for old, layer in zip(olds, layers, strict=True)]
        pruned = [int(old.sum()) - int(kept.sum()) for old, kept in zip(olds, kepts, strict=True)]
        total = sum(pruned)
        survivors = [float(kept.sum()) for kept in kepts]
        caps = [old.numel() - int(old.sum()) for old in olds]  # inactive before, not just-pruned
        exclude_pruned = total <= sum(caps)  # else (dense nets only) the just-pruned may come back
        if not exclude_pruned:
            caps = [kept.numel() - int(kept.sum()) for kept in kepts]
        grow = proportional_allocation(total, survivors, caps)
        for i, (layer, old, kept, g) in enumerate(zip(layers, olds, kepts, grow, strict=True)):
            excluded = old & ~kept if exclude_pruned else torch.zeros_like(kept)
            new = random_grow_excluding(kept, excluded, g, ctx.generator("dsr", state.step, i))
            layer.target = 1.0 - int(new.sum()) / new.numel()
            layer.mask = new
        self.last_pruned = total
        self.threshold = adapt_threshold(self.threshold, total, self.prune_target(ctx), self.cfg.tolerance)
        return True

    def choices(self) -> dict[str, Any]:
        return {
            "prune": "global threshold H on |w| (largest weight of an emptied layer kept)",
            "threshold_rule": "H/=2 above (1+delta)N pruned, H*=2 below (1-delta)N (Intel), after pruning",
            "prune_target": "prune_count" if self.cfg.prune_count is not None else "prune_fraction of sparse weights",
            "grow": "random inactive positions (not the just-pruned), count per layer proportional to its "
            "surviving weights, largest-remainder rounding, exact total",
            "update_interval_steps": list(self.cfg.update_interval_steps),
            "interval_phase_fractions": list(self.cfg.interval_phase_fractions),
            "first_update_step": int(self.cfg.update_interval_steps[0]),
            "stop_fraction": self.cfg.stop_fraction,
            "dense_gradient": "never",
            "scheme": "unstructured only",
            "init": self.cfg.init,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "last_pruned": self.last_pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.threshold = float(state["threshold"])
        self.last_pruned = int(state["last_pruned"])


@SPARSITY_METHODS.register("dsr")
def build_dsr(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """DSR: global adaptive magnitude threshold, regrowth reallocated by survivors (Mostafa & Wang, ICML 2019)."""
    return [SparseTraining(DSR(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="dsr_schema", node=DSRConfig)
