"""``prepare_dataset``: the one entry point behind ``spfde data prepare <name> ...``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .catalog import DATASETS, get_dataset_info
from .errors import DataSourceError
from .imagenet_index import build_imagefolder_index, load_index
from .prepared import read_recorded_hash, write_prepared
from .sources import SOURCES, SourceData, resolve_source
from .sources.huggingface import load_huggingface
from .sources.imagefolder import load_imagefolder
from .sources.synthetic import DEFAULTS as SYNTHETIC_DEFAULTS
from .sources.synthetic import make_synthetic
from .sources.torchvision_cifar import load_torchvision_cifar

log = logging.getLogger("spfde_core.data")


def _synthetic_params(name: str, synthetic: dict[str, Any] | None) -> dict[str, Any]:
    if synthetic is None:
        return dict(SYNTHETIC_DEFAULTS)
    if name != "synthetic":
        raise ValueError(f"synthetic= parameters apply only to the dataset 'synthetic', not {name!r}")
    unknown = sorted(set(synthetic) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic parameters {unknown}; valid: {', '.join(SYNTHETIC_DEFAULTS)}")
    return {**SYNTHETIC_DEFAULTS, **{k: int(v) for k, v in synthetic.items()}}


def prepare_dataset(
    name: str,
    *,
    source: str = "auto",
    path: str | None = None,
    out_dir: str | Path = "data/prepared",
    force: bool = False,
    synthetic: dict[str, Any] | None = None,
) -> Path:
    """Fetch or read a dataset and write its prepared form under ``<out_dir>/<name>/``.

    In-memory datasets (CIFAR, synthetic) become ``.npy`` arrays plus ``meta.json`` (see
    ``prepared.py``); ImageNet becomes ``index.json`` over its files (see ``imagenet_index.py``).
    Re-preparing identical content is a no-op; different content needs ``force=True``.

    Args:
        name: dataset name, one of ``cifar10``, ``cifar100``, ``imagenet``, ``synthetic``.
        source: ``auto``, ``imagefolder``, ``torchvision``, ``hf`` or ``synthetic``
            (see ``sources.resolve.resolve_source`` for what ``auto`` picks).
        path: directory / ``.tar.gz`` (imagefolder), hub id or ``save_to_disk`` folder (hf), or
            torchvision's download folder (torchvision; default ``data/raw``).
        out_dir: parent folder of the prepared dataset.
        force: replace an existing prepared dataset whose content differs.
        synthetic: for ``synthetic`` only: any of ``num_train``, ``num_test``, ``num_classes``,
            ``image_size``, ``seed``.

    Returns:
        The prepared folder ``<out_dir>/<name>``.

    Raises:
        ValueError: unknown name or source, bad synthetic parameters (``DataSourceError`` is a
            ``ValueError`` too and covers every source problem).
        PreparedDataError: the folder exists with other content and ``force`` is False.
    """
    if name not in DATASETS:  # the dict: plugins add to it (catalog.register_dataset)
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    params = _synthetic_params(name, synthetic)
    info = get_dataset_info(name)
    resolved = resolve_source(name, source, path)

    if not info.in_memory:
        target = build_imagefolder_index(resolved.path, out_dir, name=name, force=force)
        index = load_index(target)
        counts = {split: len(items) for split, items in index.samples.items()}
        log.info(
            "prepared %s from %s %s: train=%d test=%d classes=%d sha256=%s -> %s",
            name, "imagefolder", index.root, counts["train"], counts["test"], index.num_classes,
            index.content_sha256, target,
        )  # fmt: skip
        return target

    data: SourceData
    if resolved.kind == "synthetic":
        data = make_synthetic(**params)
    elif resolved.kind == "imagefolder":
        data = load_imagefolder(resolved.path, image_size=info.image_size)
    elif resolved.kind == "torchvision":
        data = load_torchvision_cifar(name, resolved.path)
    elif resolved.kind == "hf":
        data = load_huggingface(resolved.path)
    else:  # resolve_source only returns the kinds above
        raise DataSourceError(f"unhandled source kind {resolved.kind!r}")
    if name != "synthetic":
        # A CIFAR-100 tree passed as cifar10 (or a resized copy) must not be prepared under the wrong name.
        if len(data.class_names) != info.num_classes:
            raise DataSourceError(
                f"{data.path}: found {len(data.class_names)} classes, but {name} has {info.num_classes}"
            )
        size = info.image_size
        for split in ("train", "test"):
            shape = getattr(data, f"{split}_images").shape[1:3]
            if shape != (size, size):
                raise DataSourceError(
                    f"{data.path}: {split} images are {shape[0]}x{shape[1]}, {name} needs {size}x{size}"
                )
    target = write_prepared(name, data, out_dir, force=force)
    log.info(
        "prepared %s from %s %s: train=%d test=%d classes=%d sha256=%s -> %s",
        name, data.kind, data.path, len(data.train_labels), len(data.test_labels), len(data.class_names),
        read_recorded_hash(target), target,
    )  # fmt: skip
    return target
