"""Hugging Face ``datasets`` source: a hub id or a directory written by ``save_to_disk``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import DataSourceError
from .base import SourceData

log = logging.getLogger("spfde_core.data")

IMAGE_COLUMNS = ("img", "image")
# CIFAR-100 on the hub carries both `fine_label` and `coarse_label`; the benchmark uses the fine ones.
LABEL_COLUMNS = ("label", "fine_label", "labels")
TEST_SPLITS = ("test", "validation")


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DataSourceError(
            "the Hugging Face source needs the `datasets` package: pip install 'spfde-bench[hf]'"
        ) from exc
    return datasets


def _pick(columns: list[str], wanted: tuple[str, ...], what: str, where: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise DataSourceError(f"{where}: no {what} column; expected one of {list(wanted)}, found {columns}")


def _to_arrays(split: Any, image_col: str, label_col: str, desc: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(split[label_col], dtype=np.int64)
    images: np.ndarray | None = None
    for i, example in enumerate(tqdm(split, desc=desc, unit="img", disable=None, leave=False)):
        arr = np.asarray(example[image_col].convert("RGB"))
        if images is None:
            images = np.empty((len(split), *arr.shape), dtype=np.uint8)
        if arr.shape != images.shape[1:]:
            raise DataSourceError(f"{desc}: example {i} is {arr.shape}, expected {images.shape[1:]}")
        images[i] = arr
    if images is None:
        raise DataSourceError(f"{desc}: the split is empty")
    return images, labels


def load_huggingface(path: str) -> SourceData:
    """Load a dataset with train and test (or validation) splits from the hub or from disk.

    Args:
        path: an existing local directory (read with ``datasets.load_from_disk``), otherwise a hub
            id (``datasets.load_dataset``), e.g. ``uoft-cs/cifar10``.

    Returns:
        ``SourceData`` in the dataset's row order; class names from the label column's ``ClassLabel``
        feature (or ``"0"``, ``"1"``, ... when the column is a plain integer).

    Raises:
        DataSourceError: ``datasets`` missing, dataset unreadable, or the splits/columns are not found.
    """
    datasets = _import_datasets()
    try:
        if Path(path).is_dir():
            ds = datasets.load_from_disk(path)
        else:
            ds = datasets.load_dataset(path)
    except Exception as exc:  # datasets raises many unrelated types (hub, network, file errors)
        raise DataSourceError(f"cannot load Hugging Face dataset {path!r}: {exc}") from exc
    if not isinstance(ds, datasets.DatasetDict):
        raise DataSourceError(f"{path}: expected a DatasetDict with train and test splits, got a single split")
    test_name = next((s for s in TEST_SPLITS if s in ds), None)
    if "train" not in ds or test_name is None:
        raise DataSourceError(f"{path}: expected splits 'train' and one of {list(TEST_SPLITS)}, found {list(ds)}")
    train, test = ds["train"], ds[test_name]
    image_col = _pick(train.column_names, IMAGE_COLUMNS, "image", path)
    label_col = _pick(train.column_names, LABEL_COLUMNS, "label", path)
    feature = train.features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        class_names = list(feature.names)
    else:
        num = int(max(max(train[label_col]), max(test[label_col]))) + 1
        class_names = [str(i) for i in range(num)]
        log.warning("%s: label column %r has no ClassLabel names; using %d numeric names", path, label_col, num)
    train_images, train_labels = _to_arrays(train, image_col, label_col, f"{path} train")
    test_images, test_labels = _to_arrays(test, image_col, label_col, f"{path} {test_name}")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataSourceError(f"{path}: train images {train_images.shape[1:]} differ from test {test_images.shape[1:]}")
    return SourceData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=class_names,
        kind="hf",
        path=str(Path(path).resolve()) if Path(path).is_dir() else path,
    )
