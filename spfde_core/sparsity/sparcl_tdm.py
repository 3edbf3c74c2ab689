"""SparCL's task-aware dynamic masking (TDM; Wang et al., NeurIPS 2022, Sec. 4.1), as its official code runs it.

``neu-spiral/SparCL`` ``prune_utils/retrain.py`` (``update_mask``) with the shipped script
(``run_mag_prune_irr_sp_EM_0.75_gradient0.80.sh``): the MEST machinery (its authors' earlier code) restarted
on every task:

- sparse layers: the profile's (``profiles/resnet18_cifar/irr/resnet18_0.75.yaml``) 16 3x3 convs of the four
  residual stages; the stem conv, the 1x1 shortcuts and the classifier stay dense (``layers: paper``);
  uniform per layer;
- initial mask: the top-|w| of the fresh initialisation at the target (``--sp-prune-before-retrain``);
- ``prune_update(epoch)`` is called with the *within-task* epoch, so at within-task epochs 0, 5, 10, ...
  (``--sp-mask-update-freq 5``) every sparse layer is pruned by importance to the phase's lower ("prune-to")
  sparsity and regrown uniformly at random among its zeros to the upper ("grow-to") sparsity, regrown
  weights starting at zero (the code zeroes the pruned weights before growing, so a weight pruned and
  regrown at the same update restarts at zero too; the engine's masking after the change alone would keep
  its old value);
- phases change at within-task epochs 5 and 45 (``--mask-update-decay-epoch 5-45``); at 75 %:
  lower 0.75-0.76-0.75, upper 0.74-0.75-0.75, so each task trains its first 5 epochs at 74 % and the rest
  at 75 %, and the update at epoch 45 only prunes-and-keeps;
- importance (``utils_pr.weight_pruning``): |w| + ``sp_lmd`` |g| with ``--sp-lmd`` at its default 0.5 (the
  script does not set it), g the weight's gradient *left from the last batch of the previous epoch*: ``train()``
  zeroes the gradient after every step but the epoch's last, and ``main()`` calls ``prune_update`` before its
  ``zero_grad``. That gradient is of the whole loss (current batch + buffer terms) after the gradient masking
  (weight mask, DGM), so pruned weights score 0; it is the README's single merged term for the paper's
  current-data and buffered-data scores ("alpha = beta"). The run's first update (no gradient yet) uses |w|.

Deviations and generalisations, written down (``choices()``, docs/continual.md): the paper's two importance
terms (current and buffered data, weights alpha and beta) are the code's one gradient term. Only the 75 % script
ships; for other targets the bounds keep its offsets (lower = t, t + 0.01, t; upper = t - 0.01, t, t)
[DERIVED]. Without continual learning the whole run is one task.
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
from spfde_core.sparsity.engine import SparseContext, SparseTraining, magnitude_scores
from spfde_core.sparsity.masks import SparseLayer
from spfde_core.sparsity.static import initial_masks


@dataclass
class SparCLTDMConfig(SparseConfig):
    name: str = "sparcl_tdm"
    target: float = domain("[0, 1)", 0.75, what="a sparsity")
    """Sparsity of the sparse layers (the shipped script: 0.75; the paper also reports 0.90 and 0.95)."""
    lower: list[float] | None = domain("[0, 1)", None, what="a sparsity")
    """Prune-to sparsity per phase; null = target + [0, 0.01, 0] (script at 0.75: 0.75-0.76-0.75)."""
    upper: list[float] | None = domain("[0, 1)", None, what="a sparsity")
    """Grow-to sparsity per phase; null = target - [0.01, 0, 0] (script at 0.75: 0.74-0.75-0.75)."""
    phase_epochs: list[int] = domain("[1, inf)", factory=lambda: [5, 45], what="a within-task epoch")
    """Within-task epochs at which the next phase's bounds start (script --mask-update-decay-epoch 5-45)."""
    update_every_epochs: int = domain("[1, inf)", 5)
    """Within-task epochs between mask updates, from epoch 0 of each task (script --sp-mask-update-freq 5)."""
    task_epochs: int | None = domain("[1, inf)", None)
    """Epochs per task; null = train.epochs / continual.num_tasks (the whole run without continual learning);
    ``spfde cost`` fills it the same way."""
    init: str = "magnitude"
    """Initial mask: magnitude (the script's hardening of the initial weights) or random."""
    importance_lambda: float = domain("[0, inf)", 0.5)
    """Weight of |grad| in the pruning importance |w| + lambda |grad| (code: ``--sp-lmd``, default 0.5, not set by
    the script); the gradient of the previous epoch's last step (module docstring). 0 = |w| only."""
    reset_momentum: bool = False
    """Zero the momentum of pruned weights at updates (the script's SGD has no momentum: moot there)."""

    def mutation_interval_epochs(self, epochs: int) -> int | None:
        return self.update_every_epochs

    def predicted_sparsities(self, targets: dict[str, float], epochs: int) -> list[dict[str, float]]:
        """Between updates each sparse layer sits at the grow-to sparsity of the phase of the task's last update."""
        _, upper = bounds(self.target, self.lower, self.upper)
        per_task = self.task_epochs or epochs
        out = []
        for epoch in range(epochs):
            local = epoch % per_task
            last_update = local - local % self.update_every_epochs  # a phase starts to count at the next update
            bound = upper[bisect.bisect_right(list(self.phase_epochs), last_update)]
            out.append({n: 1 - (1 - s) * (1 - bound) / (1 - self.target) for n, s in targets.items()})
        return out


def bounds(target: float, lower: Any, upper: Any) -> tuple[list[float], list[float]]:
    """(lower, upper) per phase: as given, or the script's offsets around ``target`` (module docstring)."""
    lo = list(lower) if lower is not None else [target, min(target + 0.01, 0.999), target]
    up = list(upper) if upper is not None else [max(target - 0.01, 0.0), target, target]
    return lo, up


class SparCLTDM:
    """Per-task elastic mutation (module docstring); masks and rules through the sparsity engine."""

    def __init__(self, cfg: SparCLTDMConfig, task_epochs: int) -> None:
        self.lower, self.upper = bounds(cfg.target, cfg.lower, cfg.upper)
        phases = len(cfg.phase_epochs) + 1
        if len(self.lower) != phases or len(self.upper) != phases:
            raise ValueError(f"sparsity.lower/upper: expected {phases} values (one per phase)")
        for lo, up in zip(self.lower, self.upper, strict=True):
            if not 0 <= up <= lo < 1:
                raise ValueError(f"sparsity.upper/lower: need 0 <= upper <= lower < 1, got {up} / {lo}")
        if list(cfg.phase_epochs) != sorted(cfg.phase_epochs):
            raise ValueError(f"sparsity.phase_epochs: expected increasing epochs, got {list(cfg.phase_epochs)}")
        self.cfg = cfg
        self.task_epochs = task_epochs
        self.base_targets: dict[str, float] = {}
        self.updates = 0
        self.steps_in_epoch = 0
        self.last_grads: dict[str, torch.Tensor] = {}
        """Masked gradient of the last step before an update epoch, per layer (the code's leftover ``W.grad``)."""

    def init_masks(self, ctx: SparseContext) -> None:
        self.base_targets = {layer.name: layer.target for layer in ctx.masks}
        initial_masks(ctx, self.cfg.init)

    def layer_sparsity(self, name: str, bound: float) -> float:
        # MEST's relative rule, so a non-uniform distribution keeps its shape (uniform: the bound itself)
        return 1 - (1 - self.base_targets[name]) * (1 - bound) / (1 - self.cfg.target)

    def is_update_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` starts with a mask update: within-task epochs 0, every, 2 every, ..."""
        return (epoch % self.task_epochs) % self.cfg.update_every_epochs == 0

    def importance(self, layer: SparseLayer) -> torch.Tensor:
        """|w| + lambda |g| (the code's ``weight_pruning``), |w| alone without a stored gradient; a monotone
        square of it, as ``magnitude_scores`` (|w|^2), so the scheme ranks units by summed squares."""
        grad = self.last_grads.get(layer.name)
        if not self.cfg.importance_lambda or grad is None:
            return magnitude_scores(layer.weight)
        score = layer.weight.detach().abs() + self.cfg.importance_lambda * grad.to(layer.weight.device).abs()
        return score.float().square()

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        self.steps_in_epoch = 0
        epoch = ctx.state.epoch
        if not self.is_update_epoch(epoch):  # the script's prune_update(epoch) with the within-task epoch
            return False
        local = epoch % self.task_epochs
        phase = bisect.bisect_right(list(self.cfg.phase_epochs), local)
        for i, layer in enumerate(ctx.masks):
            pruned = ctx.scheme.prune(
                layer.mask, self.importance(layer), self.layer_sparsity(layer.name, self.lower[phase])
            )
            with torch.no_grad():  # the code's W.mul_(pruned_mask) before growing: a weight pruned and
                layer.weight.mul_(pruned)  # regrown at the same update restarts at 0 like every regrown one
            grow_to = self.layer_sparsity(layer.name, self.upper[phase])
            layer.target = grow_to
            layer.mask = ctx.scheme.grow(pruned, grow_to, None, ctx.generator("sparcl_tdm", epoch, i))
        self.updates += 1
        self.last_grads = {}  # used; the code zeroes the gradient right after prune_update
        return True

    def after_backward(self, ctx: SparseContext) -> bool:
        """Keep the masked gradient of an epoch's last step when the next epoch updates the masks.

        Runs after the continual callbacks (rehearsal terms accumulated, DGM applied); the weight mask is
        applied here as the code's gradient masking does before its optimizer step.
        """
        self.steps_in_epoch += 1
        if (
            self.cfg.importance_lambda
            and self.steps_in_epoch == ctx.batches_per_epoch
            and self.is_update_epoch(ctx.state.epoch + 1)
        ):
            self.last_grads = {
                layer.name: (layer.weight.grad * layer.mask).detach().clone()
                for layer in ctx.masks
                if layer.weight.grad is not None
            }
        return False

    def choices(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "phase_epochs_within_task": list(self.cfg.phase_epochs),
            "update_every_epochs_within_task": self.cfg.update_every_epochs,
            "task_epochs": self.task_epochs,
            "importance": f"|w| + {self.cfg.importance_lambda} |g|, g = the masked gradient of the previous "
            "epoch's last step (current + buffer loss, after DGM): the code's one term for the paper's current-data "
            "and buffered-data scores (README: alpha = beta); |w| at the run's first update"
            if self.cfg.importance_lambda
            else "|w|",
            "growth": "uniformly random among zero positions (those pruned at this update included), regrown "
            "weights start at 0, the just-pruned ones too (code)",
            "bounds_source": "script at 0.75"
            if self.cfg.target == 0.75 and self.cfg.lower is None and self.cfg.upper is None
            else "given or derived",
            "init": self.cfg.init,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"base_targets": self.base_targets, "updates": self.updates, "last_grads": self.last_grads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_targets = state["base_targets"]
        self.updates = int(state["updates"])
        self.last_grads = state.get("last_grads", {})


@SPARSITY_METHODS.register("sparcl_tdm")
def build_sparcl_tdm(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """SparCL task-aware dynamic masking: MEST-style mutation restarted per task (Wang et al., NeurIPS 2022)."""
    from spfde_core.continual.common import epochs_per_task, is_on

    per_task = epochs_per_task(state.cfg) if is_on(state.cfg) else int(state.cfg.train.epochs)
    if cfg.task_epochs is not None and int(cfg.task_epochs) != per_task:
        raise ValueError(
            f"sparsity.task_epochs: expected null or the run's {per_task} epochs per task, got {cfg.task_epochs}"
        )
    return [SparseTraining(SparCLTDM(cfg, per_task), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="sparcl_tdm_schema", node=SparCLTDMConfig)
