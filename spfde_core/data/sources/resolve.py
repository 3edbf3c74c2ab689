"""Turn ``(name, source, path)`` into a concrete source kind and location."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataSourceError
from .imagefolder import is_archive
from .torchvision_cifar import OFFLINE_HINT

SOURCES = ("auto", "imagefolder", "torchvision", "hf", "synthetic")
DATA_DIR_ENV = "SPFDE_DATA_DIR"


@dataclass(frozen=True)
class ResolvedSource:
    """A concrete source: ``kind`` is one of ``SOURCES`` minus ``auto``; ``path`` may be None."""

    kind: str
    path: str | None


def _from_data_dir(name: str) -> str | None:
    data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        return None
    candidates = [Path(data_dir) / f"{name}-jpeg.tar.gz", Path(data_dir) / f"{name}.tar.gz"]
    if name == "imagenet":
        candidates = []  # a 150 GB tree is streamed from files; archives are not usable
    for archive in candidates:
        if archive.is_file():
            return str(archive)
    folder = Path(data_dir) / name
    return str(folder) if folder.is_dir() else None


def _looks_like_hf(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file())


def resolve_source(name: str, source: str = "auto", path: str | None = None) -> ResolvedSource:
    """Pick the source for ``name``.

    ``auto`` resolves, in order: an explicit ``path`` (a ``save_to_disk`` folder -> ``hf``, another
    directory or a tar archive -> ``imagefolder``); ``$SPFDE_DATA_DIR`` holding
    ``<name>-jpeg.tar.gz``, ``<name>.tar.gz`` or ``<name>/`` -> ``imagefolder``; ``synthetic`` ->
    ``synthetic``; ``cifar10``/``cifar100`` -> ``torchvision`` download. ``imagenet`` needs a path.

    Raises:
        DataSourceError: unknown source, a combination that cannot work, or a missing required path.
    """
    if source not in SOURCES:
        raise DataSourceError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    if (source == "synthetic" and name != "synthetic") or (name == "synthetic" and source not in ("auto", "synthetic")):
        raise DataSourceError(
            f"source=synthetic goes only with the dataset 'synthetic' (got dataset {name!r}, source {source!r})"
        )
    if source == "torchvision" and name not in ("cifar10", "cifar100"):
        raise DataSourceError(f"source=torchvision provides cifar10 and cifar100, not {name!r}")
    if source in ("imagefolder", "hf") and not path:
        raise DataSourceError(f"source={source} needs a path (CLI: data.path=<...>)")
    if name == "imagenet" and source not in ("auto", "imagefolder"):
        raise DataSourceError(f"imagenet is read from an ImageFolder directory (source=imagefolder), not {source}")
    if source != "auto":
        return ResolvedSource(source, path)

    if name == "synthetic":
        return ResolvedSource("synthetic", None)
    if path:
        if not Path(path).exists():
            raise DataSourceError(f"path {path} does not exist")
        if _looks_like_hf(Path(path)):
            return ResolvedSource("hf", path)
        if Path(path).is_dir() or is_archive(path):
            return ResolvedSource("imagefolder", path)
        raise DataSourceError(f"path {path} is neither a directory nor a tar archive; pass source= explicitly")
    found = _from_data_dir(name)
    if found is not None:
        return ResolvedSource("imagefolder", found)
    if name == "imagenet":
        raise DataSourceError(
            "imagenet cannot be downloaded; pass path=<ImageFolder root with train/ and val/> "
            "(CLI: data.path=...) or set "
            f"{DATA_DIR_ENV} to a folder containing imagenet/"
        )
    if name in ("cifar10", "cifar100"):
        return ResolvedSource("torchvision", None)
    raise DataSourceError(f"no automatic source for {name!r}. " + OFFLINE_HINT.format(name=name))
