"""The typed configuration tree (Hydra structured configs), its validation and its identity hash.

Every field has a type, a default and a one-line docstring. A new field must default to "no
effect" so that old run records keep their meaning and their config hash (open_lth's rule).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from spfde_core.continual.config import ContinualConfig, check_continual


@dataclass
class SyntheticConfig:
    num_train: int = 2048
    """Training samples of the synthetic dataset."""
    num_test: int = 512
    """Test samples of the synthetic dataset."""
    num_classes: int = 10
    """Classes of the synthetic dataset."""
    image_size: int = 32
    """Height and width of the synthetic images."""
    seed: int = 0
    """Seed of the synthetic generator (the data, not the run)."""


@dataclass
class DataConfig:
    name: str = "cifar10"
    """Dataset: cifar10, cifar100, imagenet or synthetic."""
    source: str = "auto"
    """Where `spfde data prepare` reads it: auto, torchvision, imagefolder, hf or synthetic."""
    path: str | None = None
    """ImageFolder directory or .tar.gz, or Hugging Face dataset id / saved directory."""
    prepared_dir: str = "data/prepared"
    """Directory holding prepared datasets (one sub-folder per dataset)."""
    num_workers: int = 4
    """Decoding workers of the streaming (ImageNet) loader; unused for in-memory data."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Generator settings, used when name=synthetic."""


@dataclass
class ModelConfig:
    name: str = "resnet32_w2"
    """Model zoo entry (see `spfde list`)."""
    width: float | None = None
    """Width multiplier for CIFAR ResNets; None keeps the entry's default."""


@dataclass
class OptimConfig:
    lr: float = 0.1
    """Peak learning rate (MEST code: 0.1)."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = False
    """Nesterov momentum (MEST code: off)."""
    weight_decay: float = 1e-4
    """L2 weight decay applied to every parameter, BN included (as the MEST code does)."""
    schedule: str = "cosine"
    """LR schedule: cosine, multistep or constant."""
    min_lr: float = 4e-8
    """Cosine floor (MEST code: CosineAnnealingLR eta_min=4e-8)."""
    milestones: list[int] = field(default_factory=lambda: [80, 120])
    """Multistep: epochs at which the LR is multiplied by gamma."""
    gamma: float = 0.1
    """Multistep decay factor."""
    warmup_epochs: float = 0.0
    """Linear warmup from 0 to lr over this many epochs (MEST scripts: off)."""
    per_iteration: bool = False
    """Update the LR every iteration (True) or once per epoch, as the MEST code does (False)."""


@dataclass
class TrainConfig:
    epochs: int = 160
    """Training epochs (MEST/SpFDE CIFAR recipe: 160)."""
    batch_size: int = 64
    """Training batch size (MEST/SpFDE: 64)."""
    eval_batch_size: int = 500
    """Evaluation batch size (affects speed only)."""
    drop_last: bool = False
    """Drop the last incomplete training batch (MEST loader: False)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss (MEST: 0)."""
    precision: str = "auto"
    """auto (bf16 autocast where the device computes bf16 natively: AMX/AVX512-BF16 CPUs, CUDA with bf16;
    else fp32), bf16 or fp32. A numerics knob, not part of the config hash (docs/hardware.md)."""
    channels_last: Any = "auto"
    """auto (channels_last unless a convolution has < 16 input channels; docs/hardware.md), true or false."""
    compile: bool = False
    """Wrap the model in torch.compile (measured: small gain on CPU, ~40 s compile time)."""
    device: str = "auto"
    """auto (CUDA if available, else CPU), cpu, cuda or cuda:N."""
    max_batches_per_epoch: int | None = None
    """Cap on training batches per epoch (smoke runs and benchmarks); None = full epochs."""
    eval_every_epochs: int = 1
    """Evaluate on the test split every N epochs (and always after the last one)."""
    progress: bool = True
    """Show a per-epoch progress bar on a terminal (never in logs)."""
    update_impl: str = "auto"
    """Masked SGD update: auto (fused where available, else eager), fused (fail if unavailable) or eager."""
    sparse_kernels: str = "auto"
    """Sparse layers on the sparse CPU kernels (docs/sparse_kernels.md): auto (a supported layer whose
    sparsity >= sparse_kernel_min_sparsity takes them where measured faster than masked dense, per layer
    and input shape, cached per machine), on (every supported sparse layer; fail if the kernels cannot
    load) or off (masked dense layers)."""
    sparse_kernel_min_sparsity: float = 0.8
    """auto: the floor below which a layer stays masked dense without measuring (SparseProp's 80%; at 80% the
    kernels ran every resnet32_w2 layer 2-3x slower than masked dense on an AMX Xeon, docs/sparse_kernels.md);
    at or above it, the path measured faster for the layer (spfde_core/ops/kernel_probe.py)."""
    loggers: list[str] = field(default_factory=list)
    """Experiment trackers mirroring the run (tensorboard, dvclive, mlflow, wandb; each an optional extra), e.g.
    train.loggers=[tensorboard,mlflow]; the record stays the source of truth (docs/integrations.md)."""


@dataclass
class MethodConfig:
    name: str = MISSING
    """Registry key of the method on this axis."""


# Every numeric field of a method config declares the values it accepts, as an interval, and validate()
# checks them all before any compute, naming the field as typed (tests/test_config_domains.py walks them):
#     drop_fraction: float = domain("[0, 1]", 0.3)
# Bounds are numbers, inf or train.epochs; a list field's domain holds for each element; null (a field's
# "the method's default") always passes. Rules that relate fields or need the data stay with the method.
_INTERVAL = re.compile(r"^([\[(])([^,\s]+), ([^\])\s]+)([\])])$")


def domain(interval: str, default: Any = None, *, factory: Callable[[], Any] | None = None, what: str = "") -> Any:
    """A method config field accepting ``interval``, e.g. ``"[0, 1)"``, ``"[1, inf)"``, ``"[0, train.epochs)"``.

    ``what`` names the kind of value in the message (default: a number / an integer).
    """
    if not _INTERVAL.match(interval):
        raise ValueError(f"domain {interval!r}: expected an interval such as '[0, 1)'")
    meta = {"domain": interval, "what": what}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass
class RunConfig:
    reproduction: str = "adhoc"
    """First folder level under results/runs: the reproduction this run belongs to."""
    row: str | None = None
    """Second level: the table row; None derives `<model>-<config hash>`."""
    seed: int = 0
    """Seed of the run: model init, data order and augmentation, method randomness."""
    results_dir: str = "results/runs"
    """Root of run records (committed to git)."""
    checkpoint_dir: str = "checkpoints"
    """Root of checkpoints (not in git)."""
    force: bool = False
    """Re-run even if a finished record exists, replacing it and any checkpoint."""
    snapshot_every_epochs: int = 0
    """Also keep the model after every N epochs (checkpoint folder, snapshots/), e.g. for CKA; 0 = never."""


@dataclass
class FeatureCacheConfig:
    """Feature-map caching of the frozen prefix (docs/freezing.md, "Feature-map caching"); off by default."""

    store: str = "none"
    """none (the frozen prefix runs every step), memory or disk (memory-mapped under the run's checkpoint dir)."""
    augment: str = "none"
    """After caching: none (un-augmented maps), naive (flip/crop in map space) or similarity (channel rule)."""
    compression: str = "none"
    """Storage: none (fp32), fp16, int8 (per-channel scale) or progressive (fp16, int8 from int8_from)."""
    int8_from: float = 0.5
    """progressive: int8 once the frozen prefix holds this share of the freezable blocks (fp16 before)."""
    budget_bytes: int = 4 * 2**30
    """Largest cache allowed; a planned cache above it is refused before training (or see over_budget)."""
    over_budget: str = "refuse"
    """refuse (raise before training) or recompute (that epoch runs uncached; the reason is recorded)."""
    views: int = 2
    """similarity: augmented views cached per sample for the sensitive channels (K)."""
    sensitive_fraction: float = 0.25
    """similarity: share of the channels (most augmentation-sensitive first) cached per view."""
    probe_samples: int = 64
    """similarity: samples of the probe batch the channel sensitivity is measured on."""


@dataclass
class Config:
    profile: str = "paper"
    """Budget label: smoke, cpu or paper; results of different profiles are never mixed."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: MethodConfig = field(default_factory=lambda: MethodConfig(name="dense"))
    freezing: MethodConfig = field(default_factory=lambda: MethodConfig(name="none"))
    sieving: MethodConfig = field(default_factory=lambda: MethodConfig(name="none"))
    run: RunConfig = field(default_factory=RunConfig)
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)
    """Feature-map caching of the frozen prefix, composable with every freezing method (off by default)."""
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    """Continual learning over task splits (docs/continual.md); off by default."""


ConfigStore.instance().store(name="base_config", node=Config)

# Keys that do not change what is computed (paths, names, speed knobs, display). They are left out
# of the config hash so the same experiment hashes the same on every machine.
NON_SEMANTIC_KEYS = (
    "run.reproduction",
    "run.row",
    "run.results_dir",
    "run.checkpoint_dir",
    "run.force",
    "run.snapshot_every_epochs",
    "data.source",
    "data.path",
    "data.prepared_dir",
    "data.num_workers",
    "train.eval_batch_size",
    "train.compile",
    "train.device",
    "train.progress",
    # Hardware-dependent numerics and layout (docs/hardware.md): the same experiment on an AMX and an
    # AVX2 machine shares one hash and one leaderboard cell, which shows the precisions it pools.
    "train.precision",
    "train.channels_last",
    "train.update_impl",  # fused and eager updates agree to float tolerance (docs/fused_update.md)
    "train.sparse_kernels",  # sparse kernels and masked dense layers agree to float tolerance
    "train.sparse_kernel_min_sparsity",
    "train.loggers",  # trackers only mirror the run (spfde_core/train/loggers.py)
)


class ConfigError(ValueError):
    """An invalid configuration; the message names the field."""


def flatten_dotted(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves under dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten_dotted(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _is_non_semantic(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NON_SEMANTIC_KEYS)


METHOD_AXES = ("sparsity", "freezing", "sieving")


def _defaults(cfg: DictConfig) -> dict[str, Any]:
    """Flat defaults: the Config dataclass, plus each chosen method's own dataclass defaults.

    A method's fields are compared with *its* dataclass defaults, so adding a field with a no-op
    default to a method later leaves the hashes of its earlier runs unchanged. The method's name
    is compared with the Config default, so choosing a method always counts.
    """
    defaults = flatten_dotted(OmegaConf.to_container(OmegaConf.structured(Config), resolve=True))
    for axis in METHOD_AXES:
        node_type = OmegaConf.get_type(cfg, axis)
        if node_type is not None and node_type is not MethodConfig and is_dataclass(node_type):
            method = flatten_dotted({axis: OmegaConf.to_container(OmegaConf.structured(node_type), resolve=True)})
            method.pop(f"{axis}.name")
            defaults.update(method)
    return defaults


def non_default_values(cfg: DictConfig) -> dict[str, Any]:
    """Semantic values that differ from the dataclass defaults, as a flat dotted dict."""
    defaults = _defaults(cfg)
    values = flatten_dotted(OmegaConf.to_container(cfg, resolve=True))
    return {
        key: value
        for key, value in sorted(values.items())
        if not _is_non_semantic(key) and (key not in defaults or defaults[key] != value)
    }


def config_hash(cfg: DictConfig) -> str:
    """sha256 (first 12 hex digits) of the canonical JSON of the non-default semantic values."""
    canonical = json.dumps(non_default_values(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _check(condition: bool, field_name: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{field_name}: expected {expected}, got {value!r}")


def _in_interval(value: Any, interval: str, epochs: int) -> bool:
    left, lo, hi, right = _INTERVAL.match(interval).groups()
    low, high = (epochs if b == "train.epochs" else float(b) for b in (lo, hi))  # float("inf") is inf
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return (low <= value if left == "[" else low < value) and (value <= high if right == "]" else value < high)


def _expected(spec: Any, epochs: int) -> str:
    """The accepted values of a method config field, in words: 'null or an integer >= 1'."""
    interval = spec.metadata["domain"]
    left, lo, hi, right = _INTERVAL.match(interval).groups()
    kind = str(spec.type)
    noun = spec.metadata["what"] or ("an integer" if "int" in kind and "float" not in kind else "a number")
    if hi == "inf":
        text = f"{noun} {'>=' if left == '[' else '>'} {lo}"
    else:
        text = f"{noun} in {interval}"
        if hi == "train.epochs":
            text += f" = {left}{lo}, {epochs}{right}"
    text = f"each value {text}" if kind.startswith("list") or "| list" in kind else text
    return f"null or {text}" if "None" in kind else text


def check_method_domains(cfg: DictConfig) -> None:
    """Every method config field that declares a ``domain``: its value (or each element) lies in it."""
    for axis in METHOD_AXES:
        node_type = OmegaConf.get_type(cfg, axis)
        if node_type is None or not is_dataclass(node_type):
            continue
        for spec in fields(node_type):
            value = cfg[axis].get(spec.name)
            if "domain" not in spec.metadata or value is None:
                continue
            values = list(value) if isinstance(value, ListConfig | list | tuple) else [value]
            ok = all(_in_interval(v, spec.metadata["domain"], cfg.train.epochs) for v in values)
            shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
            _check(ok, f"{axis}.{spec.name}", _expected(spec, cfg.train.epochs), shown)


def validate(cfg: DictConfig) -> None:
    """Check every field and cross-field rule that needs no data; raise ConfigError naming the field.

    Checks that need the dataset (batch size vs. dataset size) happen when the data is loaded,
    still before any training compute.
    """
    from spfde_core.data import get_dataset_info
    from spfde_core.freezing import FREEZING_METHODS
    from spfde_core.models import lookup_model
    from spfde_core.sieving import SIEVING_METHODS
    from spfde_core.sparsity import SPARSITY_METHODS

    _check(cfg.profile in ("smoke", "cpu", "paper"), "profile", "one of smoke, cpu, paper", cfg.profile)
    try:
        get_dataset_info(cfg.data.name)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"data.name: {err}") from None
    sources = ("auto", "torchvision", "imagefolder", "hf", "synthetic")
    _check(cfg.data.source in sources, "data.source", f"one of {', '.join(sources)}", cfg.data.source)
    syn = cfg.data.synthetic
    for key in ("num_train", "num_test", "num_classes", "image_size"):
        _check(syn[key] >= 1, f"data.synthetic.{key}", "an integer >= 1", syn[key])
    try:
        entry = lookup_model(cfg.model.name)
    except KeyError as err:
        raise ConfigError(f"model.name: {err.args[0]} (or timm-<timm model name>)") from None
    _check(cfg.model.width is None or cfg.model.width > 0, "model.width", "a positive number", cfg.model.width)
    if cfg.model.width is not None and entry.default_width is None:
        raise ConfigError(f"model.width: model '{cfg.model.name}' has no width multiplier; expected null")

    o = cfg.optim
    _check(o.lr > 0, "optim.lr", "a positive number", o.lr)
    _check(0 <= o.momentum < 1, "optim.momentum", "a number in [0, 1)", o.momentum)
    _check(not o.nesterov or o.momentum > 0, "optim.nesterov", "false when optim.momentum is 0", o.nesterov)
    _check(o.weight_decay >= 0, "optim.weight_decay", "a number >= 0", o.weight_decay)
    schedules = ("cosine", "multistep", "constant")
    _check(o.schedule in schedules, "optim.schedule", f"one of {', '.join(schedules)}", o.schedule)
    _check(0 <= o.min_lr <= o.lr, "optim.min_lr", "a number in [0, optim.lr]", o.min_lr)
    _check(0 < o.gamma <= 1, "optim.gamma", "a number in (0, 1]", o.gamma)
    _check(list(o.milestones) == sorted(o.milestones), "optim.milestones", "increasing epochs", o.milestones)

    t = cfg.train
    _check(t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    from spfde_core.train.loggers import TrackerUnavailable, check_loggers

    try:  # names, and each tracker's package importable: before any compute
        check_loggers(t.get("loggers"))
    except (ValueError, TrackerUnavailable) as err:
        raise ConfigError(str(err)) from None
    _check(0 <= o.warmup_epochs < t.epochs, "optim.warmup_epochs", "in [0, train.epochs)", o.warmup_epochs)
    _check(t.batch_size >= 1, "train.batch_size", "an integer >= 1", t.batch_size)
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", "an integer >= 1", t.eval_batch_size)
    _check(0 <= t.label_smoothing < 1, "train.label_smoothing", "a number in [0, 1)", t.label_smoothing)
    _check(t.precision in ("auto", "bf16", "fp32"), "train.precision", "auto, bf16 or fp32", t.precision)
    _check(t.channels_last in ("auto", True, False), "train.channels_last", "auto, true or false", t.channels_last)
    _check(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        "train.device",
        "auto, cpu, cuda or cuda:N",
        t.device,
    )
    _check(
        t.max_batches_per_epoch is None or t.max_batches_per_epoch >= 1,
        "train.max_batches_per_epoch",
        "null or an integer >= 1",
        t.max_batches_per_epoch,
    )
    impls = ("auto", "fused", "eager")
    _check(t.update_impl in impls, "train.update_impl", "one of auto, fused, eager", t.update_impl)
    kernels = ("auto", "on", "off")
    _check(t.sparse_kernels in kernels, "train.sparse_kernels", "one of auto, on, off", t.sparse_kernels)
    _check(
        0.0 <= t.sparse_kernel_min_sparsity <= 1.0,
        "train.sparse_kernel_min_sparsity",
        "a sparsity in [0, 1]",
        t.sparse_kernel_min_sparsity,
    )
    _check(t.eval_every_epochs >= 1, "train.eval_every_epochs", "an integer >= 1", t.eval_every_epochs)

    for axis, registry in (
        ("sparsity", SPARSITY_METHODS),
        ("freezing", FREEZING_METHODS),
        ("sieving", SIEVING_METHODS),
    ):
        name = cfg[axis].name
        _check(name in registry, f"{axis}.name", f"one of {', '.join(registry.names())}", name)
    check_method_domains(cfg)  # every numeric method field, in the field the user typed (not a derived one)
    check_feature_cache(cfg)
    check_continual(cfg)
    _check(
        cfg.run.snapshot_every_epochs >= 0,
        "run.snapshot_every_epochs",
        "an integer >= 0",
        cfg.run.snapshot_every_epochs,
    )
    for key in ("reproduction", "row"):
        value = cfg.run[key]
        if value is not None:
            _check(
                bool(value) and "/" not in value and not value.startswith("."),
                f"run.{key}",
                "a non-empty folder name without '/'",
                value,
            )


def check_feature_cache(cfg: DictConfig) -> None:
    """The ``feature_cache`` node (absent in configs written before it existed: off)."""
    fc = cfg.get("feature_cache")
    if fc is None:
        return
    for key, allowed in (
        ("store", ("none", "memory", "disk")),
        ("augment", ("none", "naive", "similarity")),
        ("compression", ("none", "fp16", "int8", "progressive")),
        ("over_budget", ("refuse", "recompute")),
    ):
        _check(fc[key] in allowed, f"feature_cache.{key}", f"one of {', '.join(allowed)}", fc[key])
    _check(0 <= fc.int8_from <= 1, "feature_cache.int8_from", "a number in [0, 1]", fc.int8_from)
    _check(fc.budget_bytes >= 0, "feature_cache.budget_bytes", "an integer >= 0", fc.budget_bytes)
    _check(fc.views >= 1, "feature_cache.views", "an integer >= 1", fc.views)
    frac = fc.sensitive_fraction
    _check(0 < frac <= 1, "feature_cache.sensitive_fraction", "a number in (0, 1]", frac)
    _check(fc.probe_samples >= 1, "feature_cache.probe_samples", "an integer >= 1", fc.probe_samples)
    if fc.store != "none" and cfg.freezing.name == "none":
        raise ConfigError("feature_cache.store: caches the frozen prefix's maps; expected none when freezing=none")
    if fc.store == "none":  # a cache option without a cache would be recorded but do nothing
        default = FeatureCacheConfig()
        changed = sorted(k for k in fc if k != "store" and fc[k] != getattr(default, k))
        if changed:
            raise ConfigError(
                f"feature_cache.{changed[0]}: set to {fc[changed[0]]!r}, but feature_cache.store=none caches "
                "nothing; expected feature_cache.store=memory or disk, or the default"
            )
