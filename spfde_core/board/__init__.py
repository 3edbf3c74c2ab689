"""The leaderboard (`spfde board`): run records -> results/LEADERBOARD.md, leaderboard.csv, plots/.

- ``spec``: reproductions/<name>/rows.yaml (tables, settings, entries) expanded into runs;
- ``paper``: reproductions/<name>/paper.csv (paper-reported values, each with its source);
- ``collect``: every record validated against the schema and checked for consistency;
- ``aggregate``: cells per protocol (mean, 95% t-interval, n, FLOPs, memory, time), Pareto ranks;
- ``render`` / ``plots``: deterministic Markdown, CSV and seaborn PNGs;
- ``claims``: reproductions/<name>/claims.yaml tested on the cells (Claims section, results/claims.csv);
- ``pipeline``: the DVC plan in params.yaml (`spfde board plan`) and a parallel runner (`spfde board run`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spfde_core import atomic
from spfde_core.records import RecordError

log = logging.getLogger("spfde_core.board")
STAGING_PREFIX = ".board-staging-"


class BoardError(RecordError):
    """The leaderboard was not rebuilt (the committed files are untouched); the message says why and what to do."""


def _has_rows(table: Path) -> bool:
    """Whether a leaderboard CSV holds at least one cell (a header line alone is an empty leaderboard)."""
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return False
    return any(line.strip() for line in lines[1:])


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
    allow_empty: bool = False,
) -> BoardResult:
    """Read every record under ``runs_root`` (default results/runs) and write the leaderboard to ``out_dir``.

    Nothing committed is lost: every file is rendered into a staging folder next to the outputs and swapped in
    (``os.replace``) only once all of them exist, so a failure leaves the previous leaderboard in place; a
    non-empty leaderboard is never replaced by an empty one (no records, or none readable) unless
    ``allow_empty``.
    """
    from spfde_core.board.aggregate import build_cells, rank_protocol
    from spfde_core.board.claims import evaluate, load_all_claims, render_claims_csv, render_claims_markdown
    from spfde_core.board.collect import collect
    from spfde_core.board.dvc_files import write_dvc_files
    from spfde_core.board.html import render_html
    from spfde_core.board.paper import PAPER_FILE, load_paper
    from spfde_core.board.plots import curves_plot, pareto_plot
    from spfde_core.board.render import render_csv, render_markdown
    from spfde_core.board.spec import load_specs

    repo = Path(repo)
    runs_root = Path(runs_root) if runs_root is not None else repo / "results" / "runs"
    out_dir = Path(out_dir) if out_dir is not None else repo / "results"
    specs = load_specs(repo / "reproductions")
    claims = load_all_claims(repo / "reproductions", specs)
    paper = [v for name in sorted(specs) for v in load_paper(repo / "reproductions" / name / PAPER_FILE)]
    records, skipped = collect(runs_root, specs, skip_invalid=skip_invalid)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    cells = build_cells(records, specs)
    ranked = {}
    for pid in sorted({c.protocol.id for c in cells}):
        ranked[pid] = rank_protocol([c for c in cells if c.protocol.id == pid])
    md = out_dir / "LEADERBOARD.md"
    table = out_dir / "leaderboard.csv"
    claims_csv = out_dir / "claims.csv"
    claim_results = evaluate(claims, cells)
    if not records and not allow_empty and _has_rows(table):
        raise BoardError(
            f"{runs_root}: no readable run records ({len(skipped)} skipped); refusing to replace the non-empty "
            f"{table}, {md} and {out_dir / 'plots'} with an empty leaderboard (nothing was changed). "
            "Restore the records, or pass --allow-empty to write an empty leaderboard"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{STAGING_PREFIX}*"):  # left by a killed earlier run
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=out_dir, prefix=STAGING_PREFIX))
    try:
        board_md = render_markdown(cells, ranked, specs, paper, skipped, out_dir)
        atomic.write_text(stage / md.name, board_md + "\n" + render_claims_markdown(claims, claim_results))
        atomic.write_text(stage / table.name, render_csv(cells, paper, out_dir))
        atomic.write_text(stage / claims_csv.name, render_claims_csv(claim_results))
        staged_plots = stage / "plots"
        staged_plots.mkdir()
        names: list[str] = []
        if plots:
            for pid, group in ranked.items():
                names.append(pareto_plot(group, pid, staged_plots / f"pareto-{pid}.png", claim_results))
                for rep, tid in sorted({(c.reproduction, c.table) for c in group}):
                    sub = [c for c in group if (c.reproduction, c.table) == (rep, tid)]
                    sub.sort(key=lambda c: (c.entry, c.setting))
                    name = f"curves-{rep}-{tid.strip('()')}-{pid}.png"
                    names.append(curves_plot(sub, f"{rep} {tid}, {pid}", staged_plots / name))
        names = [p.name for p in names if p is not None]
        write_dvc_files(records, stage / "dvc")  # what `dvc metrics/params/plots` read (dvc_files.py)
        page = out_dir / "leaderboard.html"
        atomic.write_text(stage / page.name, render_html((stage / table.name).read_text(), names))
        # Everything rendered: swap it in, file by file (each os.replace is atomic).
        plot_dir = out_dir / "plots"
        plot_dir.mkdir(parents=True, exist_ok=True)
        os.replace(stage / md.name, md)
        os.replace(stage / table.name, table)
        os.replace(stage / claims_csv.name, claims_csv)
        os.replace(stage / page.name, page)
        for old in sorted(plot_dir.glob("*.png")):  # only what the current records give: stale plots go
            if old.name not in names:
                old.unlink()
        for name in names:
            os.replace(staged_plots / name, plot_dir / name)
        dvc_dir = out_dir / "dvc"
        if dvc_dir.exists():  # a folder cannot replace a non-empty one: move the old one into the staging folder
            os.replace(dvc_dir, stage / "dvc-old")
        os.replace(stage / "dvc", dvc_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    written = [plot_dir / name for name in names]
    log.info(
        "leaderboard: %d cells from %d records -> %s, %s, %d plots", len(cells), len(records), md, table, len(written)
    )
    return BoardResult(md, table, written, len(cells), len(records), skipped)
