"""SpFDE progressive layer freezing (Yuan et al., NeurIPS 2022, Sec. 4 and Alg. 1; App. B schemes).

Blocks are frozen front to back, one every ``interval_epochs`` (default: the sparsity method's
mask-update interval, MEST's 5), from T_frz, which is solved so that freezing saves
``target_reduction`` (x) of the run's training FLOPs while freezing at most the blocks that hold
``layer_fraction`` (2/3) of the conv/linear layers ("empirically freeze 2/3 of the layers").
A frozen block keeps its weights and its sparse structure. Each block follows its own cosine LR
over its own active epochs (layer-wise cosine annealing; a never-frozen block follows the run's
schedule).

Schemes (App. B):
- ``single_shot`` (default): as above; a block never resumes.
- ``single_shot_resume``: the same freeze epochs shifted ``resume_epochs`` earlier, and every block
  unfrozen for the last ``resume_epochs`` epochs at the run's (small) LR then: the same saving.
- ``periodic``: three groups; group 1 trains 1 epoch in 4, group 2 1 in 2, group 3 always; group
  sizes solved for the target (group 1 = the first half of the blocks of groups 1+2).
- ``delayed_periodic``: every block trains normally for the first ``delay_fraction`` of training,
  then the periodic pattern (groups sized for the same target over the shorter span).

The reference notes (5.3-5.5) list what the paper leaves open; our choices are in docs/freezing.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from spfde_core.config import ConfigError, MethodConfig, domain
from spfde_core.cost.meter import input_shape_of
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.freezing.planning import (
    blocks_covering_layers,
    flops_by_frozen_prefix,
    periodic_count,
    saving_share,
    solve_periodic,
    solve_progressive,
    staircase,
    target_active_counts,
)
from spfde_core.freezing.prefix import PrefixFreezing, group_blocks
from spfde_core.train.callbacks import TrainState
from spfde_core.train.schedules import LRSchedule, delta_tau

SCHEMES = ("single_shot", "single_shot_resume", "periodic", "delayed_periodic")


@dataclass
class ProgressiveConfig(MethodConfig):
    name: str = "spfde_progressive"
    target_reduction: float = domain("(0, 1)", 0.2)
    """x: share of the run's training FLOPs that freezing saves (SpFDE's "x%" in "x%+y%")."""
    scheme: str = "single_shot"
    """single_shot, single_shot_resume, periodic or delayed_periodic (SpFDE App. B)."""
    interval_epochs: int | None = domain("[1, inf)", None)
    """Epochs between two freezes; null = the sparsity method's ``mutation_interval_epochs`` if it has one, else
    MEST's interval (5 of 160 epochs) scaled with the run length (``train.schedules.delta_tau``)."""
    layer_fraction: float = domain("(0, 1]", 0.667)
    """Freeze at most the leading blocks that hold this share of the conv/linear layers (SpFDE: 2/3)."""
    resume_epochs: int = domain("[0, inf)", 10)
    """single_shot_resume: epochs at the end where every block trains again (not given by the paper)."""
    delay_fraction: float = domain("[0, 1)", 0.25)
    """delayed_periodic: share of training before the periodic pattern starts (not given by the paper)."""
    blockwise_lr: bool = True
    """Each block's cosine LR ends at its own freeze epoch (SpFDE's layer-wise cosine annealing)."""


def interval_of(state: TrainState, cfg: ProgressiveConfig) -> int:
    if cfg.interval_epochs is not None:
        return int(cfg.interval_epochs)
    from spfde_core.sparsity.config import sparse_config

    epochs = state.cfg.train.epochs
    method = sparse_config(state.cfg.sparsity)
    return int((method and method.mutation_interval_epochs(epochs)) or delta_tau(epochs))


class FrozenThenResumed:
    """A block's LR: its own cosine until it freezes, the run's schedule after every block resumes."""

    def __init__(self, own: LRSchedule, run: Any, resume_at: int) -> None:
        self.own, self.run, self.resume_at = own, run, resume_at

    def __call__(self, t: float) -> float:
        return self.run(t) if t >= self.resume_at else self.own(t)


def plan(cfg: ProgressiveConfig, state: TrainState) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """(frozen-count function, freeze epoch per block name, choices for the record)."""
    if cfg.scheme not in SCHEMES:
        raise ConfigError(f"freezing.scheme: expected one of {', '.join(SCHEMES)}, got {cfg.scheme!r}")
    model, epochs = state.model, state.cfg.train.epochs
    flops = flops_by_frozen_prefix(model, input_shape_of(state.cfg), target_active_counts(model, state.cfg.sparsity))
    names = model.block_names
    interval = interval_of(state, cfg)
    choices: dict[str, Any] = {"scheme": cfg.scheme, "interval_epochs": interval, "flops_per_sample_by_k": flops}
    if cfg.scheme in ("single_shot", "single_shot_resume"):
        max_blocks = blocks_covering_layers(model, cfg.layer_fraction)
        shift = cfg.resume_epochs if cfg.scheme == "single_shot_resume" else 0
        # Resume keeps each block's frozen span T - t_i, so it saves what single shot saves.
        freeze_epochs = solve_progressive(flops, epochs, interval, max_blocks, cfg.target_reduction)
        freeze_epochs = [t - shift for t in freeze_epochs]
        if freeze_epochs and freeze_epochs[0] < 1:
            raise ConfigError(
                f"freezing.resume_epochs: {shift} is too large here: the first freeze would move to epoch "
                f"{freeze_epochs[0]}; at most {freeze_epochs[0] + shift - 1}"
            )
        base = staircase(freeze_epochs)
        frozen = (lambda e: 0 if e >= epochs - shift else base(e)) if shift else base
        when = {names[i]: t for i, t in enumerate(freeze_epochs)}
        choices.update(t_frz=freeze_epochs[0] if freeze_epochs else None, max_blocks=max_blocks)
    else:
        start = round(cfg.delay_fraction * epochs) if cfg.scheme == "delayed_periodic" else 0
        k1, k2 = solve_periodic(flops, epochs, start, cfg.target_reduction)
        frozen = periodic_count(k1, k2, start)
        when = {}
        choices.update(group1_blocks=names[:k1], group2_blocks=names[k1:k2], periodic_start_epoch=start)
    choices["planned_reduction"] = saving_share(flops, frozen, epochs)
    return frozen, when, choices


@FREEZING_METHODS.register("spfde_progressive")
def build_progressive(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """SpFDE progressive freezing: blocks frozen front to back from T_frz solved for x% FLOPs (NeurIPS 2022)."""
    frozen, when, choices = plan(cfg, state)
    epochs = state.cfg.train.epochs

    def schedules(state: TrainState) -> list:
        run = state.schedules
        if not cfg.blockwise_lr:
            return list(run)
        out = []
        for group, block in zip(run, group_blocks(state), strict=True):
            t = when.get(state.model.block_names[block])
            if t is None or not isinstance(group, LRSchedule):
                out.append(group)
            elif cfg.scheme == "single_shot_resume":
                out.append(FrozenThenResumed(group.ending_at(t), group, epochs - cfg.resume_epochs))
            else:
                out.append(group.ending_at(t))
        return out

    return [PrefixFreezing(cfg, frozen, schedules, choices)]


ConfigStore.instance().store(group="freezing", name="spfde_progressive_schema", node=ProgressiveConfig)
