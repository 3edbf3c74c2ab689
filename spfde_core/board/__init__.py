"""The leaderboard (`spfde board`): run records -> results/LEADERBOARD.md, leaderboard.csv, plots/.

- ``spec``: reproductions/<name>/rows.yaml (tables, settings, entries) expanded into runs;
- ``paper``: reproductions/<name>/paper.csv (paper-reported values, each with its source);
- ``collect``: every record validated against the schema and checked for consistency;
- ``aggregate``: cells per protocol (mean, 95% t-interval, n, FLOPs, memory, time), Pareto ranks;
- ``render`` / ``plots``: deterministic Markdown, CSV and seaborn PNGs;
- ``pipeline``: the DVC plan in params.yaml (`spfde board plan`) and a parallel runner (`spfde board run`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from spfde_core import atomic

log = logging.getLogger("spfde_core.board")


@dataclass
class BoardResult:
    markdown: Path
    csv: Path
    plots: list[Path]
    cells: int
    records: int
    skipped: list[tuple[str, str]]


def build_board(
    repo: Path = Path("."),
    runs_root: Path | None = None,
    out_dir: Path | None = None,
    skip_invalid: bool = False,
    plots: bool = True,
) -> BoardResult:
    """Read every record under ``runs_root`` (default results/runs) and write the leaderboard to ``out_dir``."""
    from spfde_core.board.aggregate import build_cells, rank_protocol
    from spfde_core.board.collect import collect
    from spfde_core.board.paper import PAPER_FILE, load_paper
    from spfde_core.board.plots import curves_plot, pareto_plot
    from spfde_core.board.render import render_csv, render_markdown
    from spfde_core.board.spec import load_specs

    repo = Path(repo)
    runs_root = Path(runs_root) if runs_root is not None else repo / "results" / "runs"
    out_dir = Path(out_dir) if out_dir is not None else repo / "results"
    specs = load_specs(repo / "reproductions")
    paper = [v for name in sorted(specs) for v in load_paper(repo / "reproductions" / name / PAPER_FILE)]
    records, skipped = collect(runs_root, specs, skip_invalid=skip_invalid)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    cells = build_cells(records, specs)
    ranked = {}
    for pid in sorted({c.protocol.id for c in cells}):
        ranked[pid] = rank_protocol([c for c in cells if c.protocol.id == pid])
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "LEADERBOARD.md"
    table = out_dir / "leaderboard.csv"
    atomic.write_text(md, render_markdown(cells, ranked, specs, paper, skipped, out_dir))
    atomic.write_text(table, render_csv(cells, paper, out_dir))
    written: list[Path] = []
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(plot_dir.glob("*.png")):  # only what the current records give: stale plots go
        old.unlink()
    if plots:
        for pid, group in ranked.items():
            written.append(pareto_plot(group, pid, plot_dir / f"pareto-{pid}.png"))
            for rep, tid in sorted({(c.reproduction, c.table) for c in group}):
                sub = [c for c in group if (c.reproduction, c.table) == (rep, tid)]
                sub.sort(key=lambda c: (c.entry, c.setting))
                name = f"curves-{rep}-{tid.strip('()')}-{pid}.png"
                written.append(curves_plot(sub, f"{rep} {tid}, {pid}", plot_dir / name))
    written = [p for p in written if p is not None]
    log.info(
        "leaderboard: %d cells from %d records -> %s, %s, %d plots", len(cells), len(records), md, table, len(written)
    )
    return BoardResult(md, table, written, len(cells), len(records), skipped)
