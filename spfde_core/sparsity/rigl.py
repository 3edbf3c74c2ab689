"""RigL: Rigging the Lottery (Evci et al., ICML 2020), with the update rule of its official code.

Every ``update_interval_steps`` (100) steps while ``step < end_fraction`` (0.75) x total steps, in
``after_backward`` (the dense gradient is present: the forward used masked weights, autograd gives
the full weight gradient), per sparse layer:

- drop ``k = floor(drop_fraction(t) * active)`` active weights with the smallest |w|
  (``google-research/rigl`` ``sparse_optimizers.py`` ``_get_update_op``: ``n_prune = int(n_ones *
  drop_fraction)``);
- grow the ``k`` weights with the largest |dense gradient| among the positions inactive *after*
  the drop (the code lifts only the kept weights out of the ranking), so a just-dropped weight can
  be grown again; it then keeps its value and momentum (the code's ``reinit_when_same=False``).
  Newly grown weights start at 0 (``grow_init=zeros``) with zero momentum (``reset_momentum``);
- ``drop_fraction(t) = drop_fraction / 2 * (1 + cos(pi * t / T_end))`` with ``T_end = end_fraction
  x total steps``: the paper's cosine decay (``drop_fraction_schedule=cosine``, default). The code's
  flag default is ``constant`` (papers.md: the run commands must set it), available here.

Decisions where paper and code differ or are silent (also in ``choices()``):

- no update at step 0: the TF code's ``last_update_step`` starts at ``-frequency`` so it also
  updates at step 0, on the gradient of the initialisation; the PyTorch ports (sparse_learning,
  ITOP) start at step ``interval``. One update out of ~700 in a CIFAR run;
- the TF code skips the optimizer step on update iterations; here the step runs as usual, with the
  new mask (grown weights receive this step's gradient, i.e. one step earlier);
- drop ranking is exact |w| with ties to the lower index (the code adds N(0, 1e-5) noise to break
  ties); block/channel/pattern schemes rank units by summed w^2 / grad^2 (scores are additive).
- the dense gradient is needed only at update steps: ``choices()["dense_gradient"]`` says so for
  the cost meter.

``set.py`` reuses ``drop_smallest`` and grows at random.
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
from spfde_core.sparsity.schemes.base import Scheme
from spfde_core.sparsity.static import initial_masks

SCHEDULES = ("constant", "cosine")


@dataclass
class RigLConfig(SparseConfig):
    name: str = "rigl"
    drop_fraction: float = domain("[0, 1]", 0.3)
    """alpha: fraction of a layer's active weights dropped (and regrown) per update (RigL code flag 0.3)."""
    drop_fraction_schedule: str = "cosine"
    """cosine (the paper: alpha/2 (1 + cos(pi t / T_end))) or constant (the code's flag default)."""
    update_interval_steps: int = domain("[1, inf)", 100)
    """Delta T: steps between mask updates (RigL CIFAR/ImageNet runs: 100)."""
    end_fraction: float = domain("[0, 1]", 0.75)
    """T_end as a fraction of all training steps; no update from then on (paper: 75%)."""
    init: str = "random"
    """Initial mask: random positions (RigL) or magnitude (top-|w| of the initialisation)."""

    def predicted_overheads(self, run: RunShape) -> Overheads:
        """A dense weight gradient of the sparse layers, one full batch, at every update step."""
        total_steps = run.steps_per_epoch * run.epochs
        end = self.end_fraction * total_steps
        steps = range(self.update_interval_steps, total_steps, self.update_interval_steps)
        dense_wg = sum(
            run.batch_size * run.dense_weight_grad_extra(min(step // run.steps_per_epoch, run.epochs - 1))
            for step in steps
            if is_update_step(step, self.update_interval_steps, end)
        )
        return Overheads(dense_weight_grad=dense_wg)


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"sparsity.drop_fraction_schedule: expected one of {SCHEDULES}, got {name!r}")


def check_scheme(method: str, scheme: str) -> None:
    """Drop-and-regrow needs room below the target; N:M has a fixed sparsity and no such room."""
    if scheme == "nm":
        raise ValueError(
            f"{method} does not support sparsity.scheme=nm: N:M fixes the sparsity at 1 - N/M, so no "
            "weights can be dropped before regrowing (use unstructured, block, channel or pattern)"
        )


def cosine_decay(value: float, t: float, t_end: float) -> float:
    """``value / 2 * (1 + cos(pi * t / t_end))`` with t clipped to [0, t_end] (TF cosine_decay, alpha=0)."""
    if t_end <= 0:
        return value
    return 0.5 * value * (1.0 + math.cos(math.pi * min(max(t, 0.0), t_end) / t_end))


def scheduled_fraction(value: float, schedule: str, t: float, t_end: float) -> float:
    """The drop fraction at time ``t``: constant, or cosine-decayed to 0 at ``t_end``."""
    check_schedule(schedule)
    return value if schedule == "constant" else cosine_decay(value, t, t_end)


def is_update_step(step: int, interval: int, end_step: float) -> bool:
    """RigL's schedule: every ``interval`` steps, from step ``interval`` while ``step < end_step``."""
    return step > 0 and step % interval == 0 and step < end_step


def drop_smallest(scheme: Scheme, mask: torch.Tensor, weight: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """``mask`` less its ``floor(drop_fraction * active)`` active weights of smallest |w| (RigL, SET).

    Block/channel/pattern schemes round the drop to whole units.
    """
    active = int(mask.sum())
    keep = active - int(active * drop_fraction)
    return scheme.prune(mask, magnitude_scores(weight), 1.0 - keep / mask.numel())


def drop_and_grow(
    scheme: Scheme,
    mask: torch.Tensor,
    weight: torch.Tensor,
    target: float,
    drop_fraction: float,
    grow_scores: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's RigL update; returns ``(new_mask, kept)``.

    ``kept`` = the mask after ``drop_smallest``; then grows back to ``target`` sparsity: the highest
    ``grow_scores`` among all positions inactive after the drop.
    """
    kept = drop_smallest(scheme, mask, weight, drop_fraction)
    return scheme.grow(kept, target, grow_scores), kept


class RigL:
    """Drop by magnitude, grow by dense-gradient magnitude, every Delta T steps until T_end."""

    def __init__(self, cfg: RigLConfig) -> None:
        check_schedule(cfg.drop_fraction_schedule)
        check_scheme("rigl", cfg.scheme)  # numeric fields: their domains, checked in config.validate
        self.cfg = cfg

    def init_masks(self, ctx: SparseContext) -> None:
        initial_masks(ctx, self.cfg.init)

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        return False

    def end_step(self, ctx: SparseContext) -> float:
        return self.cfg.end_fraction * ctx.total_steps

    def drop_fraction(self, step: int, end_step: float) -> float:
        return scheduled_fraction(self.cfg.drop_fraction, self.cfg.drop_fraction_schedule, step, end_step)

    def needs_dense_gradient(self, ctx: SparseContext) -> bool:
        """Update steps read the dense gradient (sparse kernels give it only at active weights)."""
        return is_update_step(ctx.state.step, self.cfg.update_interval_steps, self.end_step(ctx))

    def after_backward(self, ctx: SparseContext) -> bool:
        step, end = ctx.state.step, self.end_step(ctx)
        if not is_update_step(step, self.cfg.update_interval_steps, end):
            return False
        fraction = self.drop_fraction(step, end)
        # RigL needs the dense gradient at update steps only: the cost meter charges it here.
        ctx.state.cost_events.append(
            CostEvent("dense_weight_grad", ctx.state.epoch, step, layers=[m.name for m in ctx.masks])
        )
        for layer in ctx.masks:
            grad = layer.weight.grad
            if grad is None:
                continue
            layer.mask, _ = drop_and_grow(
                ctx.scheme, layer.mask, layer.weight, layer.target, fraction, grad.detach().float().square()
            )
        return True

    def choices(self) -> dict[str, Any]:
        return {
            "drop": "smallest |w| (exact, ties to lower index; the code adds N(0,1e-5) noise)",
            "grow": "largest |dense gradient| among positions inactive after the drop (incl. just-dropped)",
            "grown_init": "zeros; momentum of new connections reset (reset_momentum)",
            "dropped_and_regrown": "keeps its value and momentum (RigL reinit_when_same=False)",
            "drop_fraction_schedule": self.cfg.drop_fraction_schedule,
            "first_update_step": self.cfg.update_interval_steps,
            "end_fraction": self.cfg.end_fraction,
            "dense_gradient": "only at update steps (every update_interval_steps until end_fraction)",
            "optimizer_step_on_update_iterations": "taken (RigL's TF code skips it)",
            "init": self.cfg.init,
        }


@SPARSITY_METHODS.register("rigl")
def build_rigl(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """RigL: drop smallest |w|, grow largest dense |grad| every 100 steps (Evci et al., ICML 2020)."""
    return [SparseTraining(RigL(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="rigl_schema", node=RigLConfig)
