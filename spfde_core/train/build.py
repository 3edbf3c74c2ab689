"""Turn a validated config into the run's parts: device, data loaders and model."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from spfde_core import hardware, layout_probe, provenance
from spfde_core.config import ConfigError
from spfde_core.data import (
    ImageFolderStreamLoader,
    TensorLoader,
    get_dataset_info,
    load_prepared,
    prepare_dataset,
)
from spfde_core.data.types import Loader
from spfde_core.models import build_model
from spfde_core.models.base import BlockModel

log = logging.getLogger("spfde_core.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available (use auto or cpu)")
    return device


def resolve_hardware(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Replace ``auto`` in train.precision and train.channels_last by what runs here (docs/hardware.md).

    Mutates ``cfg`` (so the record's config says what ran) and returns the record's ``hardware`` block:
    each setting as requested and resolved, with the reason (the CPU's ISA is in the provenance block). Call it once,
    before building data and model; both refuse an unresolved config.
    """
    t = cfg.train
    precision = hardware.resolve_precision(t.precision, device)
    with torch.device("meta"):  # only the layer widths matter: no memory, no init cost
        probe = build_model(cfg.model.name, 10, width=cfg.model.width)
    channels_last = hardware.resolve_channels_last(
        t.channels_last, probe, _layout_measurement(cfg, precision.value) if device.type == "cpu" else None
    )
    t.precision, t.channels_last = precision.value, channels_last.value
    block = {"precision": vars(precision), "channels_last": vars(channels_last)}
    if precision.requested == "auto" or channels_last.requested == "auto":
        log.info(
            "train.precision=%s (%s), train.channels_last=%s (%s)",
            precision.value,
            precision.reason,
            channels_last.value,
            channels_last.reason,
        )
    return block


def layout_key(cfg: DictConfig, precision: str) -> str:
    """What the faster layout depends on: the key of the layout probe's cache (spfde_core.layout_probe)."""
    info = get_dataset_info(cfg.data.name)
    batch = min(int(cfg.train.batch_size), layout_probe.PROBE_MAX_BATCH)
    isa = hardware.cpu_isa()
    parts = [
        provenance.cpu_model(),
        f"{isa.isa_class} ({isa.capability}, oneDNN cap {isa.onednn_max_isa})",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"{cfg.model.name} width {cfg.model.width}, {info.num_classes} classes",
        f"batch {batch} x {info.image_size}px, {precision}",
    ]
    kernels = _kernel_sparsifier(cfg)
    return " | ".join(parts + [kernels[0]] if kernels else parts)


def _kernel_sparsifier(cfg: DictConfig) -> tuple[str, Callable[[torch.nn.Module], Any]] | None:
    """(key text, sparsify) for a run that may put sparse layers on the sparse kernels; None otherwise.

    ``sparsify(model)`` gives the layout probe the run's per-layer sparsities and scheme with the kernels
    installed at or above the floor (spfde_core.ops.sparse_layers.install_for_layout_probe). None where
    the run never uses the kernels: ``off``, ``auto`` under torch.compile (as ``attach_sparse_kernels``),
    dense, a method that needs the dense gradient every step (SNFS), kernels not built for this CPU, or
    no layer whose target sparsity reaches the floor. Dynamic methods are timed at their target: MEST's
    and SparCL's grow phases run slightly below it, which the per-layer measurement handles at run time.
    """
    mode, sparsity = cfg.train.sparse_kernels, cfg.sparsity
    if mode == "off" or (mode == "auto" and cfg.train.compile) or sparsity.name == "dense" or "target" not in sparsity:
        return None
    from spfde_core.ops import native
    from spfde_core.sparsity import SPARSITY_METHODS

    if getattr(SPARSITY_METHODS.get(sparsity.name), "dense_gradient_every_step", False):
        return None
    if native.unavailable_reason("spconv") is not None:
        return None
    from spfde_core.ops.sparse_layers import install_for_layout_probe
    from spfde_core.sparsity.distributions import layer_sparsities_from_config
    from spfde_core.sparsity.schemes import get_scheme

    floor = 0.0 if mode == "on" else float(cfg.train.sparse_kernel_min_sparsity)
    with torch.device("meta"):  # only the layer shapes matter
        shapes = build_model(cfg.model.name, get_dataset_info(cfg.data.name).num_classes, width=cfg.model.width)
    targets = layer_sparsities_from_config(shapes, sparsity)
    if all(target < floor for target in targets.values()):
        return None  # no layer would ever reach the kernels (e.g. SparCL's 75%, floor 0.8)
    params = {"block": {"block_size": sparsity.block_size}, "nm": {"n": sparsity.nm_n, "m": sparsity.nm_m}}
    scheme = get_scheme(sparsity.scheme, **params.get(sparsity.scheme, {}))

    def sparsify(model: torch.nn.Module) -> Any:
        return install_for_layout_probe(model, layer_sparsities_from_config(model, sparsity), floor, scheme)

    # what the timing depends on: the kernel build, the mode and floor, the scheme and every layer's sparsity
    per_layer = hashlib.sha256(json.dumps(sorted(targets.items())).encode()).hexdigest()[:8]
    build = native.select_target("spconv").name
    text = (
        f"sparse kernels {mode} ({build} build, floor {floor}) at {sparsity.name} {sparsity.scheme} "
        f"{json.dumps(params.get(sparsity.scheme, {}), sort_keys=True)}, layer sparsities {per_layer}, "
        f"{sparsity.distribution} {sparsity.target}"
    )
    return text, sparsify


def _layout_measurement(cfg: DictConfig, precision: str):
    """The faster layout for this model, batch and precision on this CPU, cached (spfde_core.layout_probe)."""
    info = get_dataset_info(cfg.data.name)
    batch = min(int(cfg.train.batch_size), layout_probe.PROBE_MAX_BATCH)

    def probe() -> dict[str, float]:
        kernels = _kernel_sparsifier(cfg)
        log.info(
            "train.channels_last=auto: timing both layouts for this model%s (once per machine)",
            ", masked dense and on the sparse kernels" if kernels else "",
        )
        model = lambda: build_model(cfg.model.name, info.num_classes, width=cfg.model.width)  # noqa: E731
        sparsify = kernels[1] if kernels else None
        return layout_probe.measure(model, info.image_size, info.num_classes, batch, precision == "bf16", sparsify)

    def measured_choice() -> tuple[bool, str]:  # the key may build the kernels: rank 0 alone
        kernels_only = cfg.train.sparse_kernels == "on"
        return layout_probe.cached_choice(layout_key(cfg, precision), probe, kernels_only)

    def choice() -> tuple[bool, str]:  # only called under channels_last=auto
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        decided = [measured_choice() if not dist or torch.distributed.get_rank() == 0 else None]
        if dist:  # rank 0 measures alone (ranks timing side by side would disturb each other); all train in its layout
            torch.distributed.broadcast_object_list(decided, src=0)
        return decided[0]

    return choice


def _require_resolved(cfg: DictConfig) -> None:
    if "auto" in (cfg.train.precision, cfg.train.channels_last):
        raise RuntimeError("train.precision/channels_last are still 'auto': call resolve_hardware(cfg, device) first")


def prepared_path(data: DictConfig) -> Path:
    """Where ``spfde data prepare`` writes a dataset and training reads it.

    Synthetic variants get their own folder (named by their generator settings) so tests and
    smoke runs with different sizes never collide.
    """
    root = Path(data.prepared_dir)
    if data.name == "synthetic":
        settings = json.dumps(OmegaConf.to_container(data.synthetic), sort_keys=True)
        root = root / f"synthetic-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
    return root / data.name


def prepare(data: DictConfig, force: bool = False) -> Path:
    """Run the dataset preparation the config describes (the `spfde data prepare` verb)."""
    synthetic = OmegaConf.to_container(data.synthetic) if data.name == "synthetic" else None
    source = "synthetic" if data.name == "synthetic" else data.source
    return prepare_dataset(
        data.name,
        source=source,
        path=data.path,
        out_dir=prepared_path(data).parent,
        force=force,
        synthetic=synthetic,
    )


@dataclass
class DataBundle:
    train: Loader
    test: Loader
    record: dict[str, Any]
    """The run record's data block: name, source, content hash, sizes."""


def build_data(cfg: DictConfig, device: torch.device) -> DataBundle:
    """Load the prepared dataset into loaders; check the batch fits the dataset."""
    _require_resolved(cfg)
    info = get_dataset_info(cfg.data.name)
    directory = prepared_path(cfg.data)
    if cfg.data.name == "synthetic" and not directory.exists():
        prepare(cfg.data)  # generated locally in a second: no reason to make the user run a step
    t = cfg.train
    if not info.in_memory:
        common = {"seed": cfg.run.seed, "num_workers": cfg.data.num_workers, "channels_last": t.channels_last}
        train = ImageFolderStreamLoader(directory, "train", batch_size=t.batch_size, train=True, **common)
        test = ImageFolderStreamLoader(directory, "val", batch_size=t.eval_batch_size, train=False, **common)
        meta = train.meta
    else:
        prepared = load_prepared(directory)
        common = {"seed": cfg.run.seed, "device": device, "channels_last": t.channels_last}
        train = TensorLoader.from_prepared(
            prepared, "train", batch_size=t.batch_size, train=True, drop_last=t.drop_last, **common
        )
        test = TensorLoader.from_prepared(prepared, "test", batch_size=t.eval_batch_size, train=False, **common)
        meta = prepared.meta
    if t.batch_size > train.num_samples:
        raise ConfigError(
            f"train.batch_size: expected at most the {train.num_samples} training samples of "
            f"{cfg.data.name}, got {t.batch_size}"
        )
    record = {
        "name": cfg.data.name,
        "source": meta["source"],
        "content_sha256": meta["content_sha256"],
        "num_train": train.num_samples,
        "num_test": test.num_samples,
        "num_classes": meta["num_classes"],
        "prepared_dir": str(directory),
    }
    return DataBundle(train, test, record)


def build_model_for(cfg: DictConfig, num_classes: int, device: torch.device) -> BlockModel:
    """The zoo model, on ``device``, in channels_last if asked; init follows ``torch``'s seed."""
    _require_resolved(cfg)
    model = build_model(cfg.model.name, num_classes, width=cfg.model.width).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
