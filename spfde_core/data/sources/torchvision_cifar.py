"""CIFAR-10 / CIFAR-100 through ``torchvision.datasets`` (downloads the original pickled release)."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.error import URLError

import numpy as np

from ..errors import DataSourceError
from .base import SourceData

DEFAULT_ROOT = Path("data/raw")

OFFLINE_HINT = (
    "Accepted local sources: an ImageFolder directory or .tar.gz of one "
    "(`spfde data prepare {name} data.source=imagefolder data.path=<dir or .tar.gz>`), "
    "a Hugging Face dataset (`data.source=hf data.path=<hub id or save_to_disk directory>`), "
    "or set the SPFDE_DATA_DIR environment variable to a folder holding "
    "{name}-jpeg.tar.gz, {name}.tar.gz or {name}/."
)


def load_torchvision_cifar(name: str, root: str | Path | None = None) -> SourceData:
    """Load CIFAR-10 or CIFAR-100 with torchvision, downloading into ``root`` when absent.

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: torchvision's download/cache folder (holding ``cifar-10-batches-py`` or
            ``cifar-100-python``); default ``data/raw``.

    Returns:
        ``SourceData`` in torchvision's sample order (CIFAR-100 uses the 100 fine labels).

    Raises:
        DataSourceError: unknown name, or the files are absent and no network was reachable.
    """
    from torchvision.datasets import CIFAR10, CIFAR100  # torchvision import is slow; only when used

    classes = {"cifar10": CIFAR10, "cifar100": CIFAR100}
    if name not in classes:
        raise DataSourceError(f"the torchvision source provides {', '.join(classes)}, not {name!r}")
    root = Path(root) if root is not None else DEFAULT_ROOT
    try:
        train = classes[name](root=str(root), train=True, download=True)
        test = classes[name](root=str(root), train=False, download=True)
    except (URLError, ConnectionError, TimeoutError, socket.gaierror) as exc:
        raise DataSourceError(
            f"cannot download {name} with torchvision into {root}: no network was reachable ({exc}). "
            + OFFLINE_HINT.format(name=name)
        ) from exc
    except (OSError, RuntimeError) as exc:  # unwritable root, truncated or corrupted download
        raise DataSourceError(
            f"cannot download {name} with torchvision into {root}: {exc}. " + OFFLINE_HINT.format(name=name)
        ) from exc
    return SourceData(
        train_images=train.data,
        train_labels=np.asarray(train.targets),
        test_images=test.data,
        test_labels=np.asarray(test.targets),
        class_names=list(train.classes),
        kind="torchvision",
        path=str(root.resolve()),
    )
