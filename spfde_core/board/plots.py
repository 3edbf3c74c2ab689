"""The leaderboard's plots (PNG, byte-deterministic), one set per protocol.

- ``pareto-<protocol>.png``: final top-1 against training FLOPs (x dense, log axis), every cell of the
  protocol on one set of axes; error bars = the cell's 95% t-interval over seeds (the table's ``±``; none
  for n = 1); the Pareto front drawn through the cells the table ranks 1 (``Cell.pareto_rank`` from
  ``aggregate.rank_protocol``, never recomputed here); each claim of the Claims section that compares two
  cells of the protocol drawn as an arrow B -> A in its verdict's colour, with the region its conditions
  claim for A shaded, and spelled out under the axes.
- ``curves-<reproduction>-<table>-<protocol>.png``: test top-1 over cumulative training FLOPs (the sum of
  ``curve.csv``'s per-epoch ``train_flops``), one panel per setting, one line per entry (mean over seeds) with
  a band from the lowest to the highest seed; a dense reference (sparsity 0) is repeated in every panel.

Determinism: Agg backend, fixed figure size and dpi, no ``Software`` PNG metadata, a fixed SVG hash salt, and
every input sorted before it is drawn.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from spfde_core.board.aggregate import Cell

# PNG metadata carries the matplotlib version only when asked; None drops it (byte-identical output).
PNG_META = {"Software": None}
DPI = 100
VERDICT_COLOURS = {"holds": "#2e7d32", "does not hold": "#c62828"}  # anything else (inconclusive): grey
INCONCLUSIVE = "#616161"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _setup():  # noqa: ANN202 - returns (plt, sns)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    plt.rcParams["svg.hashsalt"] = "spfde"
    return plt, sns


def _name(cell: Cell, tables: int) -> str:
    prefix = f"{cell.table}: " if tables > 1 else ""
    if cell.setting_label.lower() in (cell.label.lower(), "-"):
        return f"{prefix}{cell.label}"
    return f"{prefix}{cell.label}, {cell.setting_label}"


def _colours(cells: list[Cell], sns: Any) -> dict[str, Any]:  # noqa: ANN401 - the seaborn module
    """One colour per entry (the same in both plots): black for a dense reference, else a palette in name order."""
    dense = {c.entry for c in cells if c.sparsity == 0} - {c.entry for c in cells if c.sparsity != 0}
    entries = sorted({c.entry for c in cells} - dense)
    palette = sns.color_palette("tab10" if len(entries) <= 10 else "husl", len(entries))
    return {**dict(zip(entries, palette, strict=True)), **{e: "k" for e in dense}}


def _ref(cell: Cell) -> str:
    return f"{cell.table}/{cell.entry}/{cell.setting}"


def _verdict_colour(verdict: str) -> str:
    return VERDICT_COLOURS.get(verdict, INCONCLUSIVE)


def _log_ticks(ax: Any) -> None:  # noqa: ANN401 - a matplotlib Axes
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _claimed_region(conditions: list[Any], a: Cell, b: Cell) -> tuple[float, float, float, float] | None:
    """Where A's point must lie for the conditions on the pair (A, B) to hold on the means: (x0, x1, y0, y1)."""
    x0, x1, y0, y1 = 0.0, math.inf, -math.inf, math.inf
    bx, by = b.flops_ratio, b.top1_mean
    for r in conditions:
        cond = r.condition
        m = cond.margin
        if cond.metric == "train_flops":  # 100 (A / B - 1) vs m
            lo, hi = bx * (1 - m / 100), bx * (1 + m / 100)
            if cond.direction == "greater":
                x0 = max(x0, hi)
            elif cond.direction == "less":
                x1 = min(x1, hi)
            else:
                x0, x1 = max(x0, min(lo, hi)), min(x1, max(lo, hi))
        elif cond.metric == "top1":  # A - B vs m, in points
            if cond.direction == "greater":
                y0 = max(y0, by + m)
            elif cond.direction == "less":
                y1 = min(y1, by + m)
            else:
                y0, y1 = max(y0, by - m), min(y1, by + m)
    if (x0, x1, y0, y1) == (0.0, math.inf, -math.inf, math.inf):
        return None
    return x0, x1, y0, y1


def _condition_text(r: Any) -> str:  # noqa: ANN401 - a claims.ConditionResult
    cond = r.condition
    unit = "%" if cond.metric == "train_flops" else " pp"
    what = "train FLOPs" if cond.metric == "train_flops" else "top-1"
    diff = "n/a" if r.difference is None else f"{r.difference:+.2f}{unit}"
    role = " (requires)" if cond.role == "requires" else ""
    return f"{what} {diff}, claimed {cond.expected()}: {r.verdict}{role}"


def _claims_on_pairs(claim_results: list[Any], protocol_id: str, cells: dict[str, Cell]) -> list[tuple]:
    """(claim result, A cell, B cell, its conditions on that pair) for every two-cell comparison drawable here."""
    out = []
    for result in claim_results:
        if result.protocol != protocol_id:
            continue
        pairs: dict[tuple[str, str], list[Any]] = {}
        for r in result.conditions:
            if r.condition.b is None or r.condition.metric not in ("top1", "train_flops"):
                continue
            pairs.setdefault((str(r.condition.a), str(r.condition.b)), []).append(r)
        for (a, b), conditions in pairs.items():
            if a in cells and b in cells:
                out.append((result, cells[a], cells[b], conditions))
    return out


def pareto_plot(cells: list[Cell], protocol_id: str, path: Path, claim_results: list[Any] = ()) -> Path | None:
    """Top-1 against training-FLOPs ratio for the cells of one protocol, ranked (``aggregate.rank_protocol``)."""
    rows = sorted(
        (c for c in cells if c.flops_ratio is not None),
        key=lambda c: (c.reproduction, c.table, c.sparsity, c.entry, c.setting),
    )
    if not rows:
        return None
    plt, sns = _setup()
    tables = len({(c.reproduction, c.table) for c in rows})
    levels = sorted({c.sparsity for c in rows})
    colours = _colours(rows, sns)
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    ys: list[float] = []
    for cell in rows:
        colour = colours[cell.entry]
        ci = cell.top1_ci
        y = cell.top1_mean
        yerr = None if ci is None else [[y - ci[0]], [ci[1] - y]]
        ys += [y] if ci is None else [ci[0], ci[1]]
        ax.errorbar(
            [cell.flops_ratio],
            [y],
            yerr=yerr,
            fmt=MARKERS[levels.index(cell.sparsity) % len(MARKERS)],
            color=colour,
            ms=7,
            capsize=3,
            lw=1.2,
            label=f"{_name(cell, tables)} (n={cell.n})",
            zorder=3,
        )
    xs = [c.flops_ratio for c in rows]
    x_lo, x_hi = min(xs) / 1.35, max(xs) * 1.35
    pad = max(0.5, 0.12 * (max(ys) - min(ys)))
    y_lo, y_hi = min(ys) - pad, max(ys) + pad
    front = sorted((c.flops_ratio, c.top1_mean) for c in rows if c.pareto_rank == 1)
    if front:
        # The attained region's border: from each front point right to the next one's FLOPs, then up.
        fx = [x for x, _ in front] + [x_hi]
        fy = [y for _, y in front] + [front[-1][1]]
        ax.step(fx, fy, where="post", color="k", ls="--", lw=1, zorder=2, label="Pareto front (table: rank 1)")
        ax.scatter(
            [x for x, _ in front], [y for _, y in front], s=190, facecolors="none", edgecolors="k", lw=1, zorder=4
        )
    notes = []
    by_ref = {_ref(c): c for c in rows}
    for result, a, b, conditions in _claims_on_pairs(list(claim_results), protocol_id, by_ref):
        colour = _verdict_colour(result.verdict)
        region = _claimed_region(conditions, a, b)
        if region is not None:
            x0, x1, y0, y1 = region
            ax.fill_between(
                [max(x0, x_lo / 10), min(x1, x_hi * 10)],
                max(y0, y_lo - 100),
                min(y1, y_hi + 100),
                color=colour,
                alpha=0.10,
                lw=0,
                zorder=1,
            )
        ax.annotate(
            "",
            xy=(a.flops_ratio, a.top1_mean),
            xytext=(b.flops_ratio, b.top1_mean),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.3, "shrinkA": 7, "shrinkB": 7},
            zorder=5,
        )
        mx, my = math.sqrt(a.flops_ratio * b.flops_ratio), (a.top1_mean + b.top1_mean) / 2
        ax.annotate(
            f"claim {result.claim.id}",
            (mx, my),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            color=colour,
            zorder=6,
        )
        conds = "; ".join(_condition_text(r) for r in conditions)
        notes.append(
            f"claim {result.claim.id} ({result.verdict}): A = {_name(a, tables)}, B = {_name(b, tables)}. {conds}"
        )
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    _log_ticks(ax)
    ax.set_xlabel("training FLOPs (x dense, log scale)")
    ax.set_ylabel("final test top-1 (%): mean over seeds, 95% CI (no bar: n = 1)")
    ax.set_title(f"Accuracy vs training FLOPs, {protocol_id}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if notes:
        text = (
            "Claims (Claims section; arrow B -> A, shading: where A's mean must lie; green holds, red does not, "
            "grey inconclusive):\n" + "\n".join(notes)
        )
        fig.text(0.01, -0.02, text, fontsize=6.5, va="top", ha="left", wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=PNG_META)
    plt.close(fig)
    return path


def read_curve(record_path: Path, curve_file: str) -> list[tuple[int, float, float]]:
    """(epoch, cumulative training FLOPs, test top-1 %) per epoch of a record's curve.csv; [] without FLOPs."""
    path = record_path.parent / curve_file
    if not path.exists():
        return []
    out, total = [], 0.0
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if not row.get("train_flops") or not row.get("test_acc"):
                return []
            total += float(row["train_flops"])
            out.append((int(row["epoch"]), total, 100.0 * float(row["test_acc"])))
    return out


def _seed_curves(cell: Cell) -> tuple[list[float], list[float], list[float], list[float]] | None:
    """Mean cumulative FLOPs, mean / min / max top-1 over seeds per epoch (epochs every seed reached)."""
    curves = [read_curve(r.path, r.data.get("curve_file", "curve.csv")) for r in cell.records]
    curves = [c for c in curves if c]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    xs = [sum(c[e][1] for c in curves) / len(curves) for e in range(length)]
    acc = [[c[e][2] for c in curves] for e in range(length)]
    return xs, [sum(a) / len(a) for a in acc], [min(a) for a in acc], [max(a) for a in acc]


def curves_plot(cells: list[Cell], title: str, path: Path) -> Path | None:
    """Test top-1 over cumulative training FLOPs, mean over seeds with a min-max band, one panel per setting."""
    data = {id(c): _seed_curves(c) for c in cells}
    drawn = [c for c in cells if data[id(c)] is not None]
    if not drawn:
        return None
    plt, sns = _setup()
    reference = [c for c in drawn if c.sparsity == 0]
    others = [c for c in drawn if c.sparsity != 0]
    if not others:
        reference, others = [], drawn
    settings = sorted({(c.sparsity, c.setting, c.setting_label) for c in others})
    colours = _colours(drawn, sns)
    peak = max(max(data[id(c)][0]) for c in drawn)
    exponent = 3 * max(0, int(math.floor(math.log10(peak) / 3))) if peak > 0 else 0
    scale = 10.0**exponent
    fig, axes = plt.subplots(
        1, len(settings), figsize=(4.2 * len(settings) + 1.8, 3.6), sharex=True, sharey=True, squeeze=False
    )
    for ax, (_, setting, setting_label) in zip(axes[0], settings, strict=True):
        panel = [(c, colours[c.entry], "-") for c in others if c.setting == setting]
        panel += [(c, colours[c.entry], "--") for c in reference]
        for cell, colour, style in panel:
            xs, mid, low, high = data[id(cell)]
            x = [v / scale for v in xs]
            ax.plot(x, mid, style, color=colour, lw=1.4, label=f"{cell.label} (n={cell.n})")
            if cell.n > 1:
                ax.fill_between(x, low, high, color=colour, alpha=0.2, lw=0)
            ax.plot(x[-1:], mid[-1:], "o", color=colour, ms=4)
        ax.set_title(f"{setting_label}", fontsize=9)
        ax.set_xlabel(f"cumulative training FLOPs (x 1e{exponent})")
        ax.set_xlim(left=0)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("test top-1 (%)")
    fig.suptitle(f"{title}\nline: mean over seeds, band: lowest to highest seed; dashed: dense reference", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=PNG_META)
    plt.close(fig)
    return path
