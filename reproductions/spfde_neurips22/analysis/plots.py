"""Seaborn PNGs of SpFDE Fig. 1: structural similarity and CKA against the final model, over epochs.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no global backend or
theme change), so importing this module from a notebook or a headless job changes nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._files import write_bytes

__all__ = ["plot_cka", "plot_similarity_heatmap", "plot_structural_similarity"]

_DPI = 150


def _integer_epochs(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())
    return Path(path)


def _depth_key(table: pd.DataFrame) -> str:
    """Colour/order layers by their model-wide number when every layer has one, else by CSV position."""
    has_numbers = "layer_number" in table.columns and table["layer_number"].notna().all()
    return "layer_number" if has_numbers else "depth"


def plot_structural_similarity(
    table: pd.DataFrame, path: str | Path, layers: list[str] | None = None, title: str | None = None
) -> Path:
    """Structural similarity over epochs, one line per layer (SpFDE Fig. 1a).

    Args:
        table: ``read_structural_similarity`` output (epoch, layer, depth, similarity; an optional
            ``layer_number`` column is used for the colours instead of ``depth``).
        path: the PNG to write.
        layers: plot only these layers, with a legend; None = all layers, coloured by depth
            (front layers dark, back layers light) with a colour bar.
    """
    key = _depth_key(table)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7, 4.2))
        ax = fig.subplots()
        if layers:
            data = table[table["layer"].isin(layers)]
            sns.lineplot(data=data, x="epoch", y="similarity", hue="layer", hue_order=layers, marker="o", ax=ax)
            ax.legend(title="layer", fontsize="small", loc="lower right")
        else:
            cmap = colormaps["viridis"]
            norm = Normalize(vmin=table[key].min(), vmax=max(table[key].max(), table[key].min() + 1))
            for _, group in table.groupby(key, sort=True):
                ax.plot(group["epoch"], group["similarity"], color=cmap(norm(group[key].iloc[0])), lw=1.2)
            label = "layer number (conv/linear, forward order)"
            if key == "depth":
                label = "sparse layer (front to back)"
            fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label)
        ax.set(
            xlabel="epoch",
            ylabel="structural similarity to final model",
            ylim=(-0.02, 1.02),
            title=title or "Structural similarity (top-50% |w| still active in final mask)",
        )
        _integer_epochs(ax)
        return _save(fig, Path(path))


def plot_similarity_heatmap(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Layers (rows, front to back) x epochs (columns) heatmap of structural similarity."""
    key = _depth_key(table)
    order = table.drop_duplicates("layer").sort_values(key)["layer"].tolist()
    grid = table.pivot(index="layer", columns="epoch", values="similarity").reindex(order)
    height = min(2 + 0.22 * len(order), 12)
    with sns.axes_style("white"):
        fig = Figure(figsize=(8, height))
        ax = fig.subplots()
        sns.heatmap(grid, vmin=0, vmax=1, cmap="magma", ax=ax, cbar_kws={"label": "structural similarity"})
        ax.set(xlabel="epoch", ylabel="layer", title=title or "Structural similarity to the final model")
        return _save(fig, Path(path))


def plot_cka(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Linear CKA between each chosen layer at every epoch and the same layer of the final model
    (SpFDE Fig. 1b: layer 10; App. A: layers 1, 3, 18, 25, 32), one line per layer."""
    order = table.drop_duplicates("layer")["layer"].tolist()
    labels = {}
    for name in order:
        number = table.loc[table["layer"] == name, "layer_number"].iloc[0] if "layer_number" in table else None
        labels[name] = f"{int(number)}: {name}" if number is not None and pd.notna(number) else name
    data = table.assign(label=table["layer"].map(labels))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7, 4.2))
        ax = fig.subplots()
        sns.lineplot(
            data=data,
            x="epoch",
            y="cka",
            hue="label",
            hue_order=[labels[n] for n in order],
            palette="viridis",
            marker="o",
            ax=ax,
        )
        ax.legend(title="layer", fontsize="small", loc="lower right")
        ax.set(
            xlabel="epoch",
            ylabel="linear CKA with final model",
            ylim=(-0.02, 1.02),
            title=title or "Representation similarity to the final model (linear CKA)",
        )
        _integer_epochs(ax)
        return _save(fig, Path(path))
