"""The prepared on-disk format of in-memory datasets: four ``.npy`` arrays and ``meta.json``.

Layout of ``<out_dir>/<name>/``::

    train_images.npy  (N, H, W, 3) uint8
    train_labels.npy  (N,) int64
    test_images.npy   (M, H, W, 3) uint8
    test_labels.npy   (M,) int64
    meta.json         {schema_version, name, num_classes, class_names, source: {kind, path},
                       splits: {train: {num_samples, shape}, test: {...}}, content_sha256, spfde_version}

``content_sha256`` covers, in order, train images, train labels (little-endian int64), test images,
test labels, then the class names joined by ``"\\n"`` (UTF-8). It identifies the pixels a run saw,
so two preparations of the same data agree and DVC / run records can key on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .errors import PreparedDataError, PreparedDataMissing
from .sources.base import SourceData

SCHEMA_VERSION = 1
SPLITS = ("train", "test")
META_FILE = "meta.json"
log = logging.getLogger("spfde_core.data")

ARRAY_FILES = tuple(f"{split}_{part}.npy" for split in SPLITS for part in ("images", "labels"))


@dataclass
class PreparedDataset:
    """A prepared in-memory dataset as loaded from disk.

    Attributes:
        directory: the ``<out_dir>/<name>`` folder it came from.
        meta: the parsed ``meta.json``.
        train_images: (N, H, W, 3) uint8.
        train_labels: (N,) int64.
        test_images: (M, H, W, 3) uint8.
        test_labels: (M,) int64.
    """

    directory: Path
    meta: dict[str, Any]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def name(self) -> str:
        """Catalog name of the dataset."""
        return self.meta["name"]

    @property
    def num_classes(self) -> int:
        """Number of classes recorded at preparation."""
        return int(self.meta["num_classes"])

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(self.meta["class_names"])

    @property
    def content_sha256(self) -> str:
        """The content hash recorded at preparation."""
        return self.meta["content_sha256"]

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images, labels)`` of ``split`` (``train`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")


def content_hash(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: list[str],
) -> str:
    """SHA-256 over the arrays' bytes and the class names, in the order documented above."""
    digest = hashlib.sha256()
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        digest.update(memoryview(np.ascontiguousarray(images, dtype=np.uint8)).cast("B"))
        digest.update(memoryview(np.ascontiguousarray(labels, dtype="<i8")).cast("B"))
    digest.update("\n".join(class_names).encode("utf-8"))
    return digest.hexdigest()


def _meta_for(name: str, data: SourceData, sha: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "num_classes": len(data.class_names),
        "class_names": data.class_names,
        "source": {"kind": data.kind, "path": data.path},
        "splits": {
            split: {
                "num_samples": int(getattr(data, f"{split}_images").shape[0]),
                "shape": list(getattr(data, f"{split}_images").shape),
            }
            for split in SPLITS
        },
        "content_sha256": sha,
        "spfde_version": __version__,
    }


def read_recorded_hash(directory: Path, meta_file: str = META_FILE) -> str | None:
    """The ``content_sha256`` in ``directory/<meta_file>``, or None when it is absent or unreadable."""
    try:
        return json.loads((directory / meta_file).read_text())["content_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def replace_directory(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` folder to ``target``, replacing what is there.

    A directory cannot be swapped in one atomic call, so the old one is first renamed aside; a
    reader sees either the old complete folder, nothing for an instant, or the new complete folder,
    never a half-written one.
    """
    # mkdtemp makes the folder private (0700); give it the permissions a plain mkdir would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(staging, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, target)


def check_overwrite(target: Path, sha: str, force: bool, meta_file: str = META_FILE) -> bool:
    """Decide what to do with an existing ``target``; True means it already holds this content.

    The hash recorded in ``target/<meta_file>`` is trusted here (re-hashing would cost as much as
    preparing); ``verify_prepared`` is the check that recomputes it.

    Raises:
        PreparedDataError: ``target`` exists with other (or unknown) content and ``force`` is False.
    """
    if not target.exists():
        return False
    recorded = read_recorded_hash(target, meta_file)
    if recorded == sha:
        log.info("%s already holds this content (sha256 %s); nothing written", target, sha)
        return True
    if not force:
        what = f"content_sha256 {recorded}" if recorded else "no readable meta/index file"
        raise PreparedDataError(
            f"{target} already exists with different content ({what}; new content is {sha}); "
            "pass force=True (CLI: --force) to replace it"
        )
    return False


def write_prepared(name: str, data: SourceData, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write ``data`` as ``<out_dir>/<name>/`` atomically.

    Args:
        name: dataset name (folder name and ``meta.name``).
        data: decoded splits.
        out_dir: parent folder, created if missing.
        force: replace an existing folder with different content.

    Returns:
        The dataset folder. When it already holds content with the same hash nothing is written.

    Raises:
        PreparedDataError: the folder exists with different content and ``force`` is False.
    """
    out_dir = Path(out_dir)
    target = out_dir / name
    sha = content_hash(data.train_images, data.train_labels, data.test_images, data.test_labels, data.class_names)
    if check_overwrite(target, sha, force):
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    # Staging next to the target keeps the final rename on one file system (so it is atomic).
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_dir))
    try:
        for split in SPLITS:
            np.save(staging / f"{split}_images.npy", getattr(data, f"{split}_images"))
            np.save(staging / f"{split}_labels.npy", getattr(data, f"{split}_labels"))
        (staging / META_FILE).write_text(json.dumps(_meta_for(name, data, sha), indent=2) + "\n")
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _load_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        name = directory.name
        raise PreparedDataMissing(
            f"prepared dataset {directory} not found; run `spfde data prepare {name}` to create it"
        )
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise PreparedDataError(f"{meta_path} is missing; re-run `spfde data prepare {directory.name} --force`")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise PreparedDataError(f"{meta_path} is not valid JSON: {exc}") from exc
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise PreparedDataError(
            f"{meta_path} has schema_version {meta.get('schema_version')!r}; "
            f"this code reads {SCHEMA_VERSION}; "
            f"re-run `spfde data prepare {directory.name} --force`"
        )
    return meta


def prepare_command(directory: Path, meta: dict[str, Any]) -> str:
    """The command that re-prepares ``directory`` from the source recorded in its meta.json."""
    source = meta.get("source") or {}
    if source.get("kind") == "synthetic":  # generated from the run's config; training makes it again when missing
        return f"rm -r {directory}"
    args = [f"spfde data prepare {meta.get('name', directory.name)}"]
    if source.get("kind"):
        args.append(f"data.source={source['kind']}")
        if source.get("path"):
            args.append(f"data.path={source['path']}")
    if directory.parent != Path("data/prepared"):
        args.append(f"data.prepared_dir={directory.parent}")
    return " ".join([*args, "--force"])


def _changed_files(directory: Path) -> list[str]:
    """Files written after meta.json (which preparation writes last); every content file if none is."""
    files = [*ARRAY_FILES, META_FILE]
    try:
        written = (directory / META_FILE).stat().st_mtime_ns
        later = [f for f in ARRAY_FILES if (directory / f).stat().st_mtime_ns > written]
    except OSError:
        later = []
    return later or files


def load_prepared(directory: str | Path, *, verify: bool = True) -> PreparedDataset:
    """Load a prepared dataset folder whole into memory and check its content hash.

    Recomputing ``content_sha256`` costs one pass over the arrays (0.3 s for CIFAR-10's 184 MB on one
    core) and is what stops a run from training on files changed after preparation.

    Args:
        directory: the ``<out_dir>/<name>`` folder.
        verify: recompute the content hash and compare it with meta.json's.

    Returns:
        The ``PreparedDataset``.

    Raises:
        PreparedDataMissing (a FileNotFoundError): the folder does not exist (the message says how to create it).
        PreparedDataError: a file is missing, meta.json is unreadable, arrays disagree with it, or (``verify``)
            the content no longer has the recorded hash; the message names the file(s) and the command to
            re-prepare.
    """
    directory = Path(directory)
    meta = _load_meta(directory)
    arrays: dict[str, np.ndarray] = {}
    for file in ARRAY_FILES:
        path = directory / file
        if not path.is_file():
            raise PreparedDataError(f"{path} is missing; re-run `spfde data prepare {directory.name} --force`")
        arrays[file.removesuffix(".npy")] = np.load(path, allow_pickle=False)
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        expected = meta["splits"][split]
        if list(images.shape) != list(expected["shape"]) or labels.shape != (expected["num_samples"],):
            raise PreparedDataError(
                f"{directory}: {split} arrays have shapes {images.shape} / {labels.shape} but meta.json "
                f"records {tuple(expected['shape'])} / ({expected['num_samples']},)"
            )
        if images.dtype != np.uint8 or labels.dtype != np.int64:
            raise PreparedDataError(f"{directory}: {split} arrays have dtypes {images.dtype} / {labels.dtype}")
    ds = PreparedDataset(directory=directory, meta=meta, **arrays)
    if verify:
        sha = content_hash(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, ds.class_names)
        if sha != ds.content_sha256:
            changed = ", ".join(str(directory / f) for f in _changed_files(directory))
            raise PreparedDataError(
                f"{changed}: changed after preparation (content sha256 {sha} does not match the "
                f"{ds.content_sha256} recorded in meta.json); refusing to use it. "
                f"To prepare it again: `{prepare_command(directory, meta)}`"
            )
    return ds


def verify_prepared(directory: str | Path) -> str:
    """Recompute the content hash of a prepared folder and check it against ``meta.json``.

    Returns:
        The verified hash.

    Raises:
        PreparedDataError: the recomputed hash differs (the files were changed after preparation).
    """
    return load_prepared(directory, verify=True).content_sha256
