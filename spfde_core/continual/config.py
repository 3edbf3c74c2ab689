"""The ``continual`` config node: task split, rehearsal and SparCL's DDR / DGM switches (docs/continual.md).

Defaults are "off" (``name: none``), so configs written before continual learning existed keep their
meaning and their config hash. Values mirror the official SparCL script
(``neu-spiral/SparCL`` ``scripts/resnet18/run_mag_prune_irr_sp_EM_0.75_gradient0.80.sh``) where it sets them.
No import from ``spfde_core.config`` at module level: that module imports this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMES = ("none", "split")
SETTINGS = ("class_il", "task_il")
REPLAYS = ("none", "er", "der", "derpp")


@dataclass
class DDRConfig:
    """SparCL's dynamic data removal: least-forgotten examples of the current task leave its training set."""

    enabled: bool = False
    """Turn DDR on (SparCL Sec. 4.2; script: --remove-n 3000 --remove-data-epoch 20)."""
    remove_per_task: int = 3000
    """Examples removed per task in total (script REMOVE_N=3000 of 10,000 per Split CIFAR-10 task)."""
    every_epochs: int = 5
    """Removal points every this many within-task epochs (the script reuses --sp-mask-update-freq 5)."""
    until_epoch: int = 20
    """Last within-task epoch with a removal point (script RM_EPOCH=20): points at 5, 10, 15, 20."""


@dataclass
class DGMConfig:
    """SparCL's dynamic gradient masking: small gradients of the sparse layers are zeroed."""

    enabled: bool = False
    """Turn DGM on (SparCL Sec. 4.3; script: --gradient_efficient_mix)."""
    sparsity: float = 0.8
    """Percentile of |grad| (over the whole tensor, masked weights' zeros included) below which gradients
    are dropped (script --gradient_sparse 0.80)."""
    refresh_batches: int = 30
    """A new gradient mask every this many batches of an epoch (script --sample_frequency 30); others reuse it."""


@dataclass
class ContinualConfig:
    """Continual learning over task splits of the dataset; ``name: none`` = ordinary training."""

    name: str = "none"
    """none (ordinary training) or split (the dataset's classes in ``num_tasks`` equal, consecutive tasks)."""
    setting: str = "class_il"
    """Headline metric: class_il (argmax over all classes) or task_il (over the sample's task's classes).
    Training is the same for both (as in the official code); the record holds both."""
    num_tasks: int = 5
    """Tasks; train.epochs must be a multiple (epochs per task = train.epochs / num_tasks, as the script's
    --epochs 250 over 5 tasks). Split CIFAR-10: 5 x 2 classes; Split CIFAR-100: 10 x 10; Tiny-ImageNet: 10 x 20."""
    replay: str = "derpp"
    """Rehearsal loss: none, er (CE on a buffer batch), der (MSE to stored logits) or derpp (both, two batches)."""
    buffer_size: int = 500
    """Reservoir buffer size in examples (script BUFFER_SIZE=500)."""
    alpha: float = 0.1
    """Weight of the buffer term: ER's CE, DER/DER++'s logit MSE (script --buffer_weight 0.1)."""
    beta: float = 0.5
    """DER++: weight of the CE on the second buffer batch (script --buffer_weight_beta 0.5)."""
    mask_other_tasks: bool = True
    """Logits of classes outside the current task at -inf in the current batch's loss (script --use_cl_mask)."""
    ddr: DDRConfig = field(default_factory=DDRConfig)
    """Dynamic data removal (SparCL)."""
    dgm: DGMConfig = field(default_factory=DGMConfig)
    """Dynamic gradient masking (SparCL)."""


def _check(ok: bool, name: str, expected: str, value: Any) -> None:
    from spfde_core.config import ConfigError

    if not ok:
        raise ConfigError(f"continual.{name}: expected {expected}, got {value!r}")


def check_continual(cfg: Any) -> None:
    """Every ``continual`` field and its rules against the rest of the config; ConfigError naming the field.

    Absent node (configs from before continual learning) = off. Checks needing the data (classes divisible
    by tasks) run when the harness is built, still before any training compute.
    """
    c = cfg.get("continual")
    if c is None or c.name == "none":
        if c is not None:
            _check(c.name in NAMES, "name", f"one of {', '.join(NAMES)}", c.name)
            _check(not c.ddr.enabled and not c.dgm.enabled, "ddr/dgm", "off when continual.name=none", True)
        return
    _check(c.name in NAMES, "name", f"one of {', '.join(NAMES)}", c.name)
    _check(c.setting in SETTINGS, "setting", f"one of {', '.join(SETTINGS)}", c.setting)
    _check(c.replay in REPLAYS, "replay", f"one of {', '.join(REPLAYS)}", c.replay)
    _check(isinstance(c.num_tasks, int) and c.num_tasks >= 1, "num_tasks", "an integer >= 1", c.num_tasks)
    epochs = cfg.train.epochs
    if epochs % c.num_tasks:
        from spfde_core.config import ConfigError

        raise ConfigError(
            f"train.epochs: expected a multiple of continual.num_tasks={c.num_tasks} (epochs per task = "
            f"train.epochs / num_tasks), got {epochs}"
        )
    _check(c.buffer_size >= 0, "buffer_size", "an integer >= 0", c.buffer_size)
    _check(c.replay == "none" or c.buffer_size >= 1, "buffer_size", f">= 1 with replay={c.replay}", c.buffer_size)
    _check(c.alpha >= 0, "alpha", "a number >= 0", c.alpha)
    _check(c.beta >= 0, "beta", "a number >= 0", c.beta)
    per_task = epochs // c.num_tasks
    d = c.ddr
    _check(d.remove_per_task >= 0, "ddr.remove_per_task", "an integer >= 0", d.remove_per_task)
    _check(d.every_epochs >= 1, "ddr.every_epochs", "an integer >= 1", d.every_epochs)
    _check(
        d.until_epoch >= 0 and (not d.enabled or d.until_epoch < per_task),
        "ddr.until_epoch",
        f"a within-task epoch in [0, {per_task}) (epochs per task)",
        d.until_epoch,
    )
    _check(
        not d.enabled or d.until_epoch >= d.every_epochs,
        "ddr.until_epoch",
        f">= ddr.every_epochs={d.every_epochs} with DDR on (else no removal point: DDR would do nothing)",
        d.until_epoch,
    )
    g = c.dgm
    _check(0 <= g.sparsity < 1, "dgm.sparsity", "a percentile in [0, 1)", g.sparsity)
    _check(g.refresh_batches >= 1, "dgm.refresh_batches", "an integer >= 1", g.refresh_batches)
    # What the harness does not combine with (yet): each refused by name rather than run wrong.
    from spfde_core.config import ConfigError

    if c.mask_other_tasks and cfg.train.label_smoothing:
        raise ConfigError("train.label_smoothing: expected 0 with continual.mask_other_tasks (-inf logits)")
    for axis in ("freezing", "sieving"):
        if cfg[axis].name != "none":
            raise ConfigError(f"{axis}.name: expected none with continual learning (DDR is its data removal)")
    fc = cfg.get("feature_cache")
    if fc is not None and fc.store != "none":
        raise ConfigError("feature_cache.store: expected none with continual learning")
