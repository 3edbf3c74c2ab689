"""Index of a large ImageFolder tree (ImageNet) that is streamed from its files, never held in memory.

``prepare`` writes ``<out_dir>/<name>/index.json``::

    {schema_version, kind: "imagefolder-index", name, root, source: {kind, path}, split_dirs,
     num_classes, class_names,
     splits: {train: {num_samples, samples: [[relative path, label], ...]}, test: {...}},
     content_sha256, hash_covers, spfde_version}

Paths are relative to ``root`` (the tree's root, after any single wrapping folder) and include the
split folder (``train/...``, ``val/...``). Splits are keyed ``train`` and ``test`` like the in-memory
format, whichever folder (``test/`` or ``val/``) the test split came from; ``split_dirs`` records it.

``content_sha256`` covers the sorted list of (relative path, file size) pairs only: hashing the
~150 GB of ImageNet file bytes would take longer than an epoch, so an in-place edit that keeps a
file's size goes unnoticed. The root is not hashed, so moving the tree keeps the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .errors import DataSourceError, PreparedDataError, PreparedDataMissing
from .prepared import check_overwrite, replace_directory
from .sources.imagefolder import list_directory_files
from .sources.layout import interpret_layout

SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
HASH_COVERS = "sorted (relative path, file size) pairs of every indexed image; file bytes are not hashed"


@dataclass
class ImageFolderIndex:
    """A loaded ``index.json``.

    Attributes:
        directory: folder holding ``index.json``.
        root: image tree the relative paths resolve against.
        class_names: class names in label order.
        samples: per split (``train``, ``test``), ``(relative path, label)`` pairs.
        content_sha256: hash recorded at preparation (see module docstring).
        meta: the whole parsed file.
    """

    directory: Path
    root: Path
    class_names: list[str]
    samples: dict[str, list[tuple[str, int]]]
    content_sha256: str
    meta: dict[str, Any]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


def _hash_entries(entries: list[tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for rel, size in sorted(entries):
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()


def build_imagefolder_index(
    root: str | Path, out_dir: str | Path, *, name: str = "imagenet", force: bool = False
) -> Path:
    """Scan an ImageFolder tree with ``train/`` and ``val/`` (or ``test/``) and write its index.

    Args:
        root: tree root (a directory; archives cannot be streamed from efficiently). ImageNet's
            validation images must already be sorted into class folders.
        out_dir: parent of the ``<name>/`` index folder.
        name: dataset name.
        force: replace an existing index with a different hash.

    Returns:
        The ``<out_dir>/<name>`` folder. Same hash and root already there: nothing is written.

    Raises:
        DataSourceError: missing or non-directory root, wrong layout, class mismatch.
        PreparedDataError: an index with another hash exists and ``force`` is False.
    """
    root = Path(root)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory (archives are not streamed)"
        raise DataSourceError(f"{name} needs an ImageFolder directory with train/ and val/; {root} {what}")
    layout = interpret_layout(list_directory_files(root), str(root))
    tree = (root / layout.prefix).resolve()
    strip = len(layout.prefix)
    samples = {split: [(path[strip:], label) for path, label in items] for split, items in layout.files.items()}
    sizes = [(rel, os.stat(tree / rel).st_size) for items in samples.values() for rel, _ in items]
    sha = _hash_entries(sizes)

    out_dir = Path(out_dir)
    target = out_dir / name
    if check_overwrite(target, sha, force, meta_file=INDEX_FILE):
        existing = json.loads((target / INDEX_FILE).read_text())
        if existing.get("root") == str(tree):
            return target
        # Same content found at a new place: rewriting only updates `root`, nothing is lost.
    index = {
        "schema_version": SCHEMA_VERSION,
        "kind": "imagefolder-index",
        "name": name,
        "root": str(tree),
        "source": {"kind": "imagefolder", "path": str(tree)},  # same block as meta.json, for run records
        "split_dirs": layout.split_dirs,
        "num_classes": len(layout.class_names),
        "class_names": layout.class_names,
        "splits": {
            split: {"num_samples": len(items), "samples": [[rel, label] for rel, label in items]}
            for split, items in samples.items()
        },
        "content_sha256": sha,
        "hash_covers": HASH_COVERS,
        "spfde_version": __version__,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_dir))
    try:
        (staging / INDEX_FILE).write_text(json.dumps(index, separators=(",", ":")) + "\n")
        replace_directory(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_index(directory: str | Path) -> ImageFolderIndex:
    """Read ``<directory>/index.json`` (``directory`` may also be the file itself).

    Raises:
        PreparedDataMissing (a FileNotFoundError): no index there (the message says how to create it).
        PreparedDataError: unreadable or unsupported index.
    """
    path = Path(directory)
    if path.name != INDEX_FILE:
        path = path / INDEX_FILE
    if not path.is_file():
        raise PreparedDataMissing(
            f"streaming index {path} not found; run "
            f"`spfde data prepare {path.parent.name} data.path=<ImageFolder root>`"
        )
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise PreparedDataError(f"{path} is not valid JSON: {exc}") from exc
    if meta.get("schema_version") != SCHEMA_VERSION or meta.get("kind") != "imagefolder-index":
        raise PreparedDataError(f"{path} is not a schema-{SCHEMA_VERSION} imagefolder index")
    samples = {split: [(rel, int(label)) for rel, label in info["samples"]] for split, info in meta["splits"].items()}
    return ImageFolderIndex(
        directory=path.parent,
        root=Path(meta["root"]),
        class_names=list(meta["class_names"]),
        samples=samples,
        content_sha256=meta["content_sha256"],
        meta=meta,
    )
