"""Per-machine measurement caches: one JSON object per file in ``$SPFDE_CACHE_DIR`` (default ``~/.cache/spfde``).

The layout probe (spfde_core/layout_probe.py, ``channels_last.json``) and the sparse-kernel probe
(spfde_core/ops/kernel_probe.py, ``sparse_kernels.json``) time something once per machine and reuse
the answer, as ``torch.backends.cudnn.benchmark`` does within a process. A cache only saves time, so a
missing, damaged or unwritable file costs a new measurement and a warning, never a failed run; a write
re-reads the file first (another run or rank may have added entries) and replaces it atomically.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spfde_core import atomic

log = logging.getLogger(__name__)

_warned: set[tuple[str, str]] = set()


def path(filename: str) -> Path:
    """``$SPFDE_CACHE_DIR/<filename>``, default ``~/.cache/spfde/<filename>``."""
    root = os.environ.get("SPFDE_CACHE_DIR") or Path.home() / ".cache" / "spfde"
    return Path(root) / filename


def _warn_once(kind: str, file: Path, message: str, *args: Any) -> None:
    if (kind, str(file)) not in _warned:
        _warned.add((kind, str(file)))
        log.warning(message, *args)


def read(file: Path, what: str, warn: bool = True) -> dict[str, Any]:
    """The cache's entries; ``{}`` (with a warning naming the file) when it is missing, unreadable or not an object."""
    try:
        cache = json.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # a damaged cache only costs a new measurement
        if warn:
            log.warning("ignoring unreadable %s cache %s (%s); measuring again", what, file, err)
        return {}
    if not isinstance(cache, dict):
        if warn:
            log.warning("ignoring %s cache %s (not a JSON object); measuring again", what, file)
        return {}
    return cache


def lookup_or_measure(
    file: Path, key: str, valid: Callable[[Any], bool], measure: Callable[[], dict[str, Any]], what: str
) -> tuple[dict[str, Any], bool]:
    """``(entry, cached)``: the valid entry under ``key``, else ``measure()``'s result, stored under ``key``."""
    entry = read(file, what).get(key)
    if valid(entry):
        return entry, True
    entry = measure()
    cache = read(file, what, warn=False)  # re-read: another run (or rank) may have written meanwhile
    cache[key] = entry
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(file, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    except OSError as err:  # read-only home: this process keeps its answer, the next one measures again
        _warn_once("write", file, "could not cache the %s measurement in %s (%s)", what, file, err)
    return entry, False
