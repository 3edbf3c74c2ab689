"""LEADERBOARD.md and leaderboard.csv: deterministic text from cells (no dates, sorted, fixed formats)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spfde_core.board.aggregate import UNLISTED, Cell, relative_link
from spfde_core.board.paper import PaperValue
from spfde_core.board.spec import Spec

PROTOCOL_VERSION = "1"
CSV_COLUMNS = (
    "protocol_version",
    "protocol",
    "reproduction",
    "table",
    "entry",
    "setting",
    "label",
    "method",
    "profile",
    "dataset",
    "data_sha256",
    "model",
    "model_width",
    "epochs",
    "n",
    "seeds",
    "precision",
    "top1_mean",
    "top1_ci95_low",
    "top1_ci95_high",
    "top1_std",
    "best_top1_mean",
    "train_flops_ratio",
    "memory_model_avg_mib",
    "peak_rss_mib",
    "wall_clock_min",
    "s_per_epoch",
    "devices",
    "pareto_rank",
    "paper_top1",
    "paper_status",
    "paper_source",
    "delta_top1",
    "records",
)
METRICS = """\
Protocol version **{v}** (run-record schema v1). A protocol = profile + dataset (name and content
sha256) + model + epochs; numbers of different protocols are never put in one cell, table or front.

- **top-1**: final-epoch test top-1 accuracy (%), mean over seeds; `±` is the half-width of the 95%
  t-interval of the mean (scipy.stats.t, n-1 degrees of freedom; none for n = 1); **n** = seeds, with
  the precision they trained in: `train.precision=auto` gives bf16 on AMX/AVX512-BF16 CPUs and fp32
  elsewhere, and both land in one cell, e.g. `3 (bf16 2, fp32 1)` (docs/hardware.md).
- **train FLOPs**: training FLOPs / dense full-data training FLOPs (`cost.training_flops.ratio_to_dense`,
  docs/cost.md; overheads such as dense gradients and scoring passes included).
- **memory**: SpFDE's training-memory model (weights, activations and their gradients; fp32, batch 64),
  average over training, MiB (`cost.memory.model.avg_bytes`).
- **wall-clock**: mean minutes per run on the device named in leaderboard.csv (`timing.wall_clock_s`).
- **task-IL** / **forgetting** (tables of continual-learning runs only, docs/continual.md; blank for a
  non-continual row there): final task-incremental average accuracy (%, `continual.final_til_avg_acc`), mean
  and 95% t-interval as top-1, whose number is the run's `continual.setting` (class-IL by default); final
  class-IL average forgetting (%, `continual.final_forgetting`), mean over seeds.
- **paper** / **Δ**: the paper-reported value with its source (`reproductions/<name>/paper.csv`) and ours
  minus paper, shown for the `paper` profile only: reduced-budget profiles are not comparable to papers.
"""


def _f(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _mean_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    """``mean ± half-width of the 95% interval`` (2 decimals); the mean alone for one seed; blank for None."""
    if value is None:
        return ""
    return f"{value:.2f}" if ci is None else f"{value:.2f} ± {(ci[1] - ci[0]) / 2:.2f}"


def _top1(cell: Cell) -> str:
    return _mean_ci(cell.top1_mean, cell.top1_ci)


def _n(cell: Cell) -> str:
    """Seeds, and the precision they trained in: bf16 and fp32 runs of one experiment share a cell."""
    return f"{cell.n} ({cell.precision_mix})"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out + [""]


def paper_top1(cell: Cell, paper: list[PaperValue]) -> PaperValue | None:
    for value in paper:
        if (value.reproduction, value.table, value.entry, value.setting, value.metric) == (
            cell.reproduction,
            cell.table,
            cell.entry,
            cell.setting,
            "top1",
        ):
            return value
    return None


def delta(cell: Cell, value: PaperValue | None) -> float | None:
    if value is None or value.status != "found" or cell.protocol.profile != "paper":
        return None
    return cell.top1_mean - value.value


def ours_for_claim(value: PaperValue, cells: list[Cell]) -> float | None:
    """Our (paper-profile) number for a found claim: absolute top-1, a top-1 difference or a FLOPs cut."""

    def find(entry: str, setting: str) -> Cell | None:
        for c in cells:
            if (c.reproduction, c.table, c.entry, c.setting, c.protocol.profile) == (
                value.reproduction,
                value.table,
                entry,
                setting,
                "paper",
            ):
                return c
        return None

    cell = find(value.entry, value.setting)
    if cell is None:
        return None
    if value.metric == "top1":
        return cell.top1_mean
    if value.metric == "flops_ratio":
        return cell.flops_ratio
    base = find(value.baseline_entry, value.baseline_setting or value.setting) if value.baseline_entry else None
    if base is None:
        return None
    if value.metric == "top1_diff":
        return cell.top1_mean - base.top1_mean
    if value.metric == "flops_reduction" and cell.flops_ratio and base.flops_ratio:
        return 100.0 * (1.0 - cell.flops_ratio / base.flops_ratio)
    return None


def _runs(cell: Cell, out_dir: Path) -> str:
    return " ".join(f"[s{r.run['seed']}]({relative_link(r.path, out_dir)})" for r in cell.records)


def render_markdown(
    cells: list[Cell],
    ranked: dict[str, list[Cell]],
    specs: dict[str, Spec],
    paper: list[PaperValue],
    skipped: list[tuple[str, str]],
    out_dir: Path,
) -> str:
    lines = [
        "# spfde-bench leaderboard",
        "",
        "<!-- Generated by `spfde board` from results/runs/**/metrics.json and reproductions/*/{rows.yaml,paper.csv}."
        " Do not edit: regenerate (`dvc repro` or `spfde board`). -->",
        "",
        METRICS.format(v=PROTOCOL_VERSION),
        "## Protocols",
        "",
    ]
    protocols = sorted({c.protocol for c in cells}, key=lambda p: p.id)
    if not protocols:
        lines += ["No run records yet: `dvc repro` (or `spfde board run --jobs N`) trains the planned runs.", ""]
    else:
        lines += _md_table(
            ["protocol", "profile", "dataset (sha256)", "model", "epochs", "cells", "runs"],
            [
                [
                    f"`{p.id}`",
                    p.profile,
                    f"{p.dataset} ({p.data_sha256[:12]})",
                    p.model + ("" if p.width is None else f" (width {p.width:g})"),
                    str(p.epochs),
                    str(sum(c.protocol == p for c in cells)),
                    str(sum(c.n for c in cells if c.protocol == p)),
                ]
                for p in protocols
            ],
        )
        lines += ["## Overall: every entry of a protocol, ranked on the accuracy / training-FLOPs Pareto front", ""]
        for pid, group in sorted(ranked.items()):
            lines += [f"### `{pid}`", ""]
            lines += _md_table(
                [
                    "front",
                    "reproduction",
                    "table",
                    "entry",
                    "setting",
                    "method",
                    "top-1 %",
                    "n",
                    "train FLOPs",
                    "memory MiB",
                    "wall-clock min",
                ],
                [
                    [
                        "" if c.pareto_rank is None else str(c.pareto_rank),
                        c.reproduction,
                        c.table,
                        c.label,
                        c.setting_label,
                        f"`{c.method}`",
                        _top1(c),
                        _n(c),
                        _f(c.flops_ratio, 3),
                        _f(c.memory_mib, 1),
                        _f(c.wall_min, 1),
                    ]
                    for c in group
                ],
            )
    names = sorted(set(specs) | {c.reproduction for c in cells})
    for name in names:
        spec = specs.get(name)
        mine = [c for c in cells if c.reproduction == name]
        lines += [f"## {name}: {spec.title if spec else '(no spec)'}", ""]
        if spec:
            lines += [f"Paper: {spec.paper}", "", f"Rows and commands: `reproductions/{name}/`.", ""]
        tables = list(spec.tables) if spec else []
        table_ids = [t.id for t in tables] + ([UNLISTED] if any(c.table == UNLISTED for c in mine) else [])
        for tid in table_ids:
            table = next((t for t in tables if t.id == tid), None)
            lines += [f"### {table.title if table else 'Runs not listed in rows.yaml'}", ""]
            if table and table.note:
                lines += [f"Note: {table.note}", ""]
            if table:
                not_runnable = [e for e in table.entries if not e.runnable]
                for e in not_runnable:
                    lines += [f"- {e.label}: {e.note}"]
                if not_runnable:
                    lines += [""]
            group = [c for c in mine if c.table == tid]
            if not group:
                lines += ["No run records yet.", ""]
            for pid in sorted({c.protocol.id for c in group}):
                rows = []
                members = [c for c in group if c.protocol.id == pid]
                # continual-learning runs (docs/continual.md) add their task-IL accuracy and average forgetting
                # (top-1 is the setting's headline, class-IL by default); other tables unchanged
                continual = any(c.forgetting is not None for c in members)
                for c in members:
                    pv = paper_top1(c, paper)
                    rows.append(
                        [
                            c.label,
                            c.setting_label,
                            _top1(c),
                            _n(c),
                            *([_mean_ci(c.til_top1_mean, c.til_top1_ci), _f(c.forgetting)] if continual else []),
                            pv.shown() if pv and c.protocol.profile == "paper" else "",
                            _f(delta(c, pv)),
                            _f(c.flops_ratio, 3),
                            _f(c.memory_mib, 1),
                            _f(c.wall_min, 1),
                            _runs(c, out_dir),
                        ]
                    )
                lines += [f"Protocol `{pid}`:", ""]
                lines += _md_table(
                    [
                        "entry",
                        "setting",
                        "top-1 %",
                        "n",
                        *(["task-IL %", "forgetting %"] if continual else []),
                        "paper",
                        "Δ",
                        "train FLOPs",
                        "memory MiB",
                        "wall-clock min",
                        "records",
                    ],
                    rows,
                )
        claims = [v for v in paper if v.reproduction == name]
        if claims:
            count = {
                s: sum(v.status == s for v in claims) for s in ("found", "found_range", "qualitative", "not_found")
            }
            lines += [
                f"### Paper-reported values ({count['found'] + count['found_range']} numbers found with a source, "
                f"{count['qualitative']} claims without a number, {count['not_found']} not found)",
                "",
            ]
            rows = []
            for v in claims:
                if v.status == "not_found":
                    continue
                ours = ours_for_claim(v, mine) if v.status == "found" else None
                diff = None if ours is None or v.value is None else ours - v.value
                base = f" vs {v.baseline_entry} {v.baseline_setting}".rstrip() if v.baseline_entry else ""
                rows.append(
                    [
                        v.table,
                        v.entry,
                        v.setting,
                        v.metric + base,
                        f"{v.shown()} {v.unit}".strip() if v.status.startswith("found") else v.shown(),
                        _f(ours),
                        _f(diff),
                        v.source,
                        v.note,
                    ]
                )
            lines += _md_table(
                ["table", "entry", "setting", "metric", "paper", "ours (paper profile)", "Δ", "source", "note"], rows
            )
            missing = sorted({v.source for v in claims if v.status == "not_found"})
            lines += ["Not found (value empty in paper.csv, never guessed); would come from: " + "; ".join(missing), ""]
    if skipped:
        lines += ["## Skipped records (`--skip-invalid`)", ""]
        lines += _md_table(["record", "reason"], [[p, reason] for p, reason in skipped])
    return "\n".join(lines).rstrip() + "\n"


def render_csv(cells: list[Cell], paper: list[PaperValue], out_dir: Path) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in cells:
        ci = c.top1_ci
        pv = paper_top1(c, paper)
        p = c.protocol
        writer.writerow(
            [
                PROTOCOL_VERSION,
                p.id,
                c.reproduction,
                c.table,
                c.entry,
                c.setting,
                c.label,
                c.method,
                p.profile,
                p.dataset,
                p.data_sha256,
                p.model,
                "" if p.width is None else f"{p.width:g}",
                p.epochs,
                c.n,
                " ".join(str(s) for s in c.seeds),
                c.precision_mix,
                _f(c.top1_mean, 4),
                _f(ci[0] if ci else None, 4),
                _f(ci[1] if ci else None, 4),
                _f(c.top1_std, 4),
                _f(c.best_top1_mean, 4),
                _f(c.flops_ratio, 6),
                _f(c.memory_mib, 3),
                _f(c.peak_rss_mib, 1),
                _f(c.wall_min, 3),
                _f(c.s_per_epoch, 3),
                "; ".join(c.devices),
                "" if c.pareto_rank is None else c.pareto_rank,
                "" if pv is None or pv.value is None else f"{pv.value:g}",
                "" if pv is None else pv.status,
                "" if pv is None else pv.source,
                _f(delta(c, pv), 4),
                " ".join(relative_link(r.path, out_dir) for r in c.records),
            ]
        )
    return buffer.getvalue()
