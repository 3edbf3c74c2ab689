"""SpFDE Fig. 1 analyses of a training run: structural similarity and CKA (SpFDE Sec. 3, Fig. 1, App. A).

Paper-specific, so it lives next to its reproduction and not in the library (issue 13): it reads a run's
record, ``structural_similarity.csv`` and the model snapshots the trainer keeps with
``run.snapshot_every_epochs=N``. From the repository root:
``python -m reproductions.spfde_neurips22.analysis <run_dir>`` (``cli``).

- ``analyze_run(run_dir, ...)``: write the PNGs and tables of one finished run (``report``);
- ``linear_cka``, ``CkaReference``: linear CKA (``cka``);
- ``read_structural_similarity``: a run's ``structural_similarity.csv`` as a tidy table (``similarity``);
- ``find_snapshots``, ``load_model``, ``capture_features``...: snapshots and features (``snapshots``).

Names are imported lazily, so importing ``.cka`` does not pull in seaborn.
See README.md in this folder.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "analyze_run": "report",
    "AnalysisError": "report",
    "IncompleteAnalysisError": "report",
    "OUTPUT_FILES": "report",
    "linear_cka": "cka",
    "CkaReference": "cka",
    "read_structural_similarity": "similarity",
    "find_snapshots": "snapshots",
    "load_model": "snapshots",
    "capture_features": "snapshots",
    "default_cka_layers": "snapshots",
    "depth_layers": "snapshots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
