"""Planning freezing schedules from analytic training FLOPs.

A freezing plan is a function epoch -> number of frozen leading blocks k. Its FLOPs saving over a
run is sum_e N * (F(0) - F(k(e))), where F(k) is the per-sample training FLOPs with the first k
blocks frozen (``spfde_core.cost``: forward always runs; the frozen blocks' weight gradients and
every input gradient in front of the first trainable layer disappear). The plans below solve their
free parameter (SpFDE's T_frz, the periodic group sizes) so that this saving meets a target share
x of the run's training FLOPs without freezing (SpFDE Alg. 1's ``train_flops``).

Densities: F is evaluated at the sparsity method's per-layer *target* densities (dense layers at
1). MEST+EM&S runs denser than its target between mutations; the cost meter charges that, the
planner does not (documented in docs/freezing.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig
from torch import nn

from spfde_core.config import ConfigError
from spfde_core.cost.flops import sample_flops
from spfde_core.cost.layers import profile_model
from spfde_core.models.base import BlockModel

FreezeCount = Callable[[int], int]
"""epoch -> number of frozen leading blocks."""


def target_active_counts(model: BlockModel, sparsity: DictConfig) -> dict[str, int] | None:
    """Active weights per sparse layer at the sparsity method's targets; None when dense."""
    if sparsity.name == "dense" or "target" not in sparsity:
        return None
    from spfde_core.sparsity.distributions import layer_sparsities_from_config

    sparsities = layer_sparsities_from_config(model, sparsity)
    sizes = {layer.name: layer.weight.numel() for layer in model.prunable_layers()}
    return {name: round((1 - s) * sizes[name]) for name, s in sparsities.items()}


def flops_by_frozen_prefix(model: BlockModel, input_shape: tuple[int, ...], active: dict[str, int] | None) -> list[int]:
    """F(k) for k = 0 .. num_blocks - 1 (the head always trains)."""
    profile = profile_model(model, input_shape)
    return [sample_flops(profile, active, k).total for k in range(len(model.blocks))]


def saving_share(flops: list[int], frozen: FreezeCount, epochs: int) -> float:
    """FLOPs saved by a plan, as a share of the no-freezing run (same samples every epoch)."""
    return sum(flops[0] - flops[frozen(e)] for e in range(epochs)) / (flops[0] * epochs)


def blocks_covering_layers(model: BlockModel, fraction: float) -> int:
    """Smallest number of leading blocks holding at least ``fraction`` of the conv/linear layers."""
    counts = [sum(isinstance(m, nn.Conv2d | nn.Linear) for m in block.modules()) for block in model.blocks]
    needed = math.ceil(fraction * sum(counts))
    covered = 0
    for k, count in enumerate(counts, start=1):
        covered += count
        if covered >= needed:
            return min(k, len(counts) - 1)
    return len(counts) - 1


def staircase(freeze_epochs: list[int]) -> FreezeCount:
    """k(e) = number of blocks whose freeze epoch is <= e (blocks frozen in order)."""
    return lambda e: sum(t <= e for t in freeze_epochs)


class PlanError(ConfigError):
    """A freezing target that the plan cannot reach; the message says what is reachable (the CLI prints it
    as a config error, no traceback)."""


def solve_progressive(flops: list[int], epochs: int, interval: int, max_blocks: int, target: float) -> list[int]:
    """SpFDE Alg. 1: freeze blocks 1..k front to back, one every ``interval`` epochs from T_frz.

    From T_frz on, the next block is frozen every interval while the planned FLOPs are still above
    the target (Alg. 1 step 2), up to ``max_blocks`` (the blocks covering ~2/3 of the layers).
    T_frz is the latest multiple of ``interval`` whose plan still reaches the target [DERIVED:
    reference notes 5.3], so blocks train as long as the budget allows. Returns the freeze epoch
    of each frozen block, in block order.
    """
    for t_frz in range(((epochs - 1) // interval) * interval, 0, -interval):
        freeze_epochs: list[int] = []
        while len(freeze_epochs) < max_blocks:
            t = t_frz + len(freeze_epochs) * interval
            if t >= epochs or saving_share(flops, staircase(freeze_epochs), epochs) >= target:
                break
            freeze_epochs.append(t)
        if saving_share(flops, staircase(freeze_epochs), epochs) >= target:
            return freeze_epochs
    best = saving_share(flops, staircase([interval * (i + 1) for i in range(max_blocks)]), epochs)
    raise PlanError(
        f"freezing.target_reduction: {target:.1%} is out of reach freezing the first {max_blocks} blocks "
        f"every {interval} epochs (at most {best:.1%} when starting at epoch {interval}); lower it or raise "
        "freezing.layer_fraction"
    )


def periodic_count(k1: int, k2: int, start: int) -> FreezeCount:
    """SpFDE App. B periodic scheme: group 1 (blocks < k1) trains 1 epoch in 4, group 2 (k1..k2) 1 in 2,
    the rest always; powers of two keep every trained block in front of trained blocks only."""

    def frozen(e: int) -> int:
        if e < start:
            return 0
        phase = (e - start) % 4
        return 0 if phase == 0 else (k1 if phase == 2 else k2)

    return frozen


def solve_periodic(flops: list[int], epochs: int, start: int, target: float) -> tuple[int, int]:
    """Smallest group-2 end k2 (group 1 = the first half of those blocks) whose saving meets the target."""
    for k2 in range(1, len(flops)):
        k1 = max(1, k2 // 2)
        if saving_share(flops, periodic_count(k1, k2, start), epochs) >= target:
            return k1, k2
    raise PlanError(
        f"freezing.target_reduction: {target:.1%} is out of reach for the periodic scheme starting at epoch "
        f"{start}; lower it"
    )
