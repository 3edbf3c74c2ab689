"""ImageFolder source: a directory or a ``.tar.gz`` of one, decoded whole into uint8 arrays.

Archives are read member by member with ``tarfile`` and decoded from memory with Pillow; nothing
is extracted to disk. See ``sources/layout.py`` for the accepted layout.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataSourceError
from .base import SourceData
from .layout import interpret_layout

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a tar archive this source reads (by suffix)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def list_directory_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root`` (symlinks followed)."""
    found = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        rel = Path(dirpath).relative_to(root).as_posix()
        found.extend(name if rel == "." else f"{rel}/{name}" for name in filenames)
    return found


def _read_archive(path: Path) -> dict[str, bytes]:
    # Streaming mode ("r|*") reads the archive once, front to back: the cheapest way through a
    # .tar.gz, and the encoded images (~55 MB for CIFAR-10) fit in memory comfortably.
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        members[member.name.removeprefix("./")] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataSourceError(f"cannot read archive {path}: {exc}") from exc
    return members


def _decode_split(
    items: list[tuple[str, int]],
    read: dict[str, bytes] | Path,
    where: str,
    size: tuple[int, int] | None,
    desc: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Decode ``items`` into one (N, H, W, 3) array; ``size`` is (width, height) or None = first image's."""
    labels = np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))
    images: np.ndarray | None = None
    for i, (name, _) in enumerate(tqdm(items, desc=desc, unit="img", disable=None, leave=False)):
        source = io.BytesIO(read[name]) if isinstance(read, dict) else read / name
        try:
            with Image.open(source) as img:
                if size is None:
                    size = img.size
                if img.size != size:
                    raise DataSourceError(
                        f"{where}: image {name!r} is {img.size[0]}x{img.size[1]}, "
                        f"expected {size[0]}x{size[1]} "
                        "(every image of an in-memory dataset must have the same size)"
                    )
                if img.mode != "RGB":
                    img = img.convert("RGB")
                if images is None:
                    # Allocate once; per-image lists plus np.stack would double peak memory.
                    images = np.empty((len(items), size[1], size[0], 3), dtype=np.uint8)
                images[i] = np.asarray(img)
        except DataSourceError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataSourceError(f"{where}: cannot decode image {name!r}: {exc}") from exc
    assert images is not None and size is not None  # interpret_layout guarantees non-empty splits
    return images, labels, size


def load_imagefolder(path: str | Path, *, image_size: int | None = None) -> SourceData:
    """Decode an ImageFolder tree (directory or tar archive) into uint8 arrays.

    Args:
        path: a directory, or a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive of one.
        image_size: required side of every (square) image; None accepts any size as long as all
            images match the first one.

    Returns:
        ``SourceData`` with labels from the sorted class folders and images in (class, path) order.

    Raises:
        DataSourceError: missing path, wrong layout, class mismatch, undecodable or wrongly sized image.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise DataSourceError(f"ImageFolder source {path} does not exist")
    if path.is_dir():
        read: dict[str, bytes] | Path = path
        names = list_directory_files(path)
    elif is_archive(path):
        read = _read_archive(path)
        names = list(read)
    else:
        raise DataSourceError(
            f"ImageFolder source {path} is neither a directory nor a tar archive ({', '.join(ARCHIVE_SUFFIXES)})"
        )
    layout = interpret_layout(names, where)
    size = None if image_size is None else (image_size, image_size)
    train_images, train_labels, size = _decode_split(layout.files["train"], read, where, size, "decode train")
    test_images, test_labels, _ = _decode_split(layout.files["test"], read, where, size, "decode test")
    return SourceData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=layout.class_names,
        kind="imagefolder",
        path=str(path.resolve()),
    )
