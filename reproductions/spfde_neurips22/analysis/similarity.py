"""Structural similarity (SpFDE Sec. 3, Fig. 1a) as written by a sparse run.

The sparse-training engine writes ``structural_similarity.csv`` into the run folder: one row per
finished epoch (``epoch`` counted from 0, as in ``curve.csv``), one column per sparse layer; a
value is the share of that epoch's top-50%-largest-magnitude active weights of the layer that are
active in the final model's mask (``spfde_core/sparsity/engine.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["SIMILARITY_FILE", "read_structural_similarity"]

SIMILARITY_FILE = "structural_similarity.csv"


def read_structural_similarity(path: str | Path) -> pd.DataFrame:
    """Read a run's ``structural_similarity.csv`` (or the run folder holding it) into a tidy table.

    Returns:
        One row per (epoch, layer), columns ``epoch`` (int, from 0), ``layer`` (str),
        ``depth`` (int, the layer's position among the CSV's layers, from 1, front to back; the
        engine writes them in model order) and ``similarity`` (float in [0, 1]); sorted by depth
        then epoch.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no ``epoch`` column or no layer column.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SIMILARITY_FILE
    wide = pd.read_csv(path)
    if "epoch" not in wide.columns or len(wide.columns) < 2:
        raise ValueError(f"{path}: expected columns epoch,<layer>,..., got {list(wide.columns)}")
    layers = [c for c in wide.columns if c != "epoch"]
    tidy = wide.melt(id_vars="epoch", value_vars=layers, var_name="layer", value_name="similarity")
    tidy["depth"] = tidy["layer"].map({name: i for i, name in enumerate(layers, start=1)})
    tidy = tidy.astype({"epoch": int, "layer": str, "depth": int, "similarity": float})
    return tidy.sort_values(["depth", "epoch"], kind="stable").reset_index(drop=True)[
        ["epoch", "layer", "depth", "similarity"]
    ]
