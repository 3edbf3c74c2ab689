"""Seaborn plots (PNG, deterministic): accuracy vs training FLOPs with the Pareto front, and curves."""

from __future__ import annotations

import csv
from pathlib import Path

from spfde_core.board.aggregate import Cell, pareto_ranks

# PNG metadata carries the matplotlib version only when asked; None drops it (byte-identical output).
PNG_META = {"Software": None}


def _setup():  # noqa: ANN202 - returns (plt, sns, pandas)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    plt.rcParams["svg.hashsalt"] = "spfde"
    return plt, sns, pd


def pareto_plot(cells: list[Cell], protocol_id: str, path: Path) -> Path | None:
    """Top-1 against training-FLOPs ratio, one panel per sparsity level; the front is drawn per panel."""
    rows = [c for c in cells if c.flops_ratio is not None]
    if not rows:
        return None
    plt, sns, pd = _setup()
    frame = pd.DataFrame(
        {
            "train FLOPs (x dense)": [c.flops_ratio for c in rows],
            "top-1 (%)": [c.top1_mean for c in rows],
            "sparsity": [f"{100 * c.sparsity:g}%" for c in rows],
            "entry": [f"{c.reproduction}/{c.table}/{c.label}" for c in rows],
        }
    )
    levels = sorted(frame["sparsity"].unique(), key=lambda s: float(s[:-1]))
    grid = sns.relplot(
        data=frame,
        x="train FLOPs (x dense)",
        y="top-1 (%)",
        col="sparsity",
        col_order=levels,
        hue="entry",
        hue_order=sorted(frame["entry"].unique()),
        kind="scatter",
        height=3.2,
        aspect=1.1,
        s=40,
        facet_kws={"sharex": False, "sharey": False},
    )
    for level, ax in zip(levels, grid.axes.flat, strict=False):
        sub = frame[frame["sparsity"] == level]
        points = list(zip(sub["top-1 (%)"], sub["train FLOPs (x dense)"], strict=True))
        ranks = pareto_ranks(points)
        front = sorted((x, y) for (y, x), r in zip(points, ranks, strict=True) if r == 1)
        ax.plot([x for x, _ in front], [y for _, y in front], "k--", lw=1, label="Pareto front")
        ax.scatter([x for x, _ in front], [y for _, y in front], s=120, facecolors="none", edgecolors="k")
    grid.figure.suptitle(f"Accuracy vs training FLOPs, {protocol_id}", y=1.03, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.figure.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_META)
    plt.close(grid.figure)
    return path


def _curve(record_path: Path, curve_file: str) -> list[tuple[int, float]]:
    path = record_path.parent / curve_file
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [(int(r["epoch"]), 100.0 * float(r["test_acc"])) for r in csv.DictReader(fh) if r.get("test_acc")]


def curves_plot(cells: list[Cell], title: str, path: Path) -> Path | None:
    """Test top-1 over epochs, mean over seeds, one line per entry, one panel per setting."""
    plt, sns, pd = _setup()
    rows = []
    for c in cells:
        for r in c.records:
            for epoch, acc in _curve(r.path, r.data.get("curve_file", "curve.csv")):
                rows.append(
                    {
                        "epoch": epoch,
                        "test top-1 (%)": acc,
                        "entry": c.label,
                        "setting": c.setting_label,
                        "seed": r.run["seed"],
                    }
                )
    if not rows:
        return None
    frame = pd.DataFrame(rows).groupby(["setting", "entry", "epoch"], as_index=False)["test top-1 (%)"].mean()
    grid = sns.relplot(
        data=frame,
        x="epoch",
        y="test top-1 (%)",
        hue="entry",
        hue_order=sorted(frame["entry"].unique()),
        col="setting",
        col_order=sorted(frame["setting"].unique()),
        kind="line",
        height=3.0,
        aspect=1.2,
        facet_kws={"sharey": False},
        errorbar=None,
    )
    grid.figure.suptitle(title, y=1.03, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.figure.savefig(path, dpi=100, bbox_inches="tight", metadata=PNG_META)
    plt.close(grid.figure)
    return path
