"""Builders of tiny on-disk datasets shared by the data tests (a uniquely named module, not
``conftest``, so test files can import it without clashing with other conftest modules)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def class_colour(label: int) -> tuple[int, int, int]:
    """A colour per class, far apart, so a decoded JPEG's class can be read from its mean colour."""
    return ((30 + 50 * label) % 256, (220 - 50 * label) % 256, (60 + 25 * label) % 256)


def write_tree(
    root: Path,
    classes: dict[str, list[str]],
    *,
    per_class: int = 3,
    size: int = 8,
    top: str | None = None,
) -> Path:
    """Write ``[top/]<split>/<class>/<k>.jpg`` images of solid per-class colour (plus a little noise).

    ``classes`` maps split folder name to class names; a class's colour follows its position in the
    sorted union of all class names.
    """
    base = root / top if top else root
    ordered = sorted({c for names in classes.values() for c in names})
    rng = np.random.default_rng(0)
    for split, names in classes.items():
        for name in names:
            folder = base / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                pixels = np.empty((size, size, 3), dtype=np.uint8)
                pixels[:] = class_colour(ordered.index(name))
                pixels[0, 0] = rng.integers(0, 255, 3)
                Image.fromarray(pixels).save(folder / f"{k:04d}.jpg", quality=95)
    return root


def make_tarball(src: Path, archive: Path) -> Path:
    """Pack every entry under ``src`` into a .tar.gz (entries relative to ``src``)."""
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(src.iterdir()):
            tar.add(entry, arcname=entry.name)
    return archive
