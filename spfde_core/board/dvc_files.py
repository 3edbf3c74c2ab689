"""What DVC's own tools read (`dvc metrics`, `dvc params`, `dvc plots`), derived from the run records.

A run's folder is one DVC output of its `train@<key>` stage, and DVC refuses a metrics or plots file declared
inside another output (OverlappingOutputPathsError), so the records cannot be declared where they are. The
leaderboard stage writes, from every record it accepted, one small file per run under ``results/dvc/``:

- ``metrics/<reproduction>/<row>/seed<k>.json``: the record's headline numbers, flat (`dvc metrics show/diff`:
  one row per run; the nested metrics.json would give some 300 columns, most of them strings);
- ``params/<reproduction>/<row>/seed<k>.yaml``: the run's resolved config, i.e. its real hyper-parameters
  (`dvc params diff`: ``optim.lr``, ``sparsity.target``, ...);
- ``curves.csv``: every run's per-epoch curve in long form (run, epoch, top-1, cumulative training FLOPs), for
  the plot definitions at the top of dvc.yaml (one line per run; template ``dvc_templates/runs.json``).

The record stays the source of truth: each file is a pure function of it, written deterministically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from spfde_core.board.collect import Record

# Config keys that say where files go, not what was trained.
_NOT_PARAMS = {("run", "checkpoint_dir"), ("run", "results_dir"), ("run", "force"), ("data", "prepared_dir")}
CURVE_FIELDS = ("run", "profile", "epoch", "test_top1", "train_top1", "test_loss", "cum_train_flops", "density")


def run_id(record: Record) -> str:
    """``<reproduction>/<row>/seed<k>``: the run's path under results/runs, the name DVC shows."""
    run = record.run
    return f"{run['reproduction']}/{run['row']}/seed{run['seed']}"


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def run_metrics(record: Record) -> dict[str, Any]:
    """The flat headline numbers of one record (accuracies in %, FLOPs as counted, times in s)."""
    d = record.data
    res, cost = d["results"], d.get("cost") or {}
    flops = cost.get("training_flops") or {}
    out: dict[str, Any] = {
        "top1": round(100 * res["final_top1"], 4),
        "best_top1": round(100 * res["best_top1"], 4),
        "final_test_loss": res.get("final_test_loss"),
        "epochs": res.get("epochs"),
        "train_flops": flops.get("total"),
        "train_flops_ratio": flops.get("ratio_to_dense"),
        "savings_sparsity_flops": _get(flops, "savings", "sparsity"),
        "savings_freezing_flops": _get(flops, "savings", "freezing"),
        "savings_sieving_flops": _get(flops, "savings", "sieving"),
        "overhead_flops": _get(flops, "overheads", "total"),
        "memory_model_avg_bytes": _get(cost, "memory", "model", "avg_bytes"),
        "peak_rss_bytes": _get(cost, "memory", "measured", "cpu_peak_rss_bytes"),
        "wall_clock_s": _get(d, "timing", "wall_clock_s"),
        "train_s": _get(d, "timing", "train_s"),
        "density": _get(d, "sparsity", "all_prunable_density"),
        "frozen_blocks_max": _get(d, "freezing", "choices", "max_blocks"),
        "sieving_active_size": _get(d, "sieving", "active_size"),
    }
    return {k: v for k, v in out.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def run_params(record: Record) -> dict[str, Any]:
    """The resolved config of one record without its output paths (nested, as Hydra composed it)."""
    config = json.loads(json.dumps(record.data["config"]))
    for group, key in _NOT_PARAMS:
        if isinstance(config.get(group), dict):
            config[group].pop(key, None)
    return config


def _curve_rows(record: Record, rid: str) -> list[dict[str, Any]]:
    curve = record.path.parent / record.data.get("curve_file", "curve.csv")
    if not curve.is_file():
        return []
    rows, total = [], 0
    with curve.open(newline="") as fh:
        for row in csv.DictReader(fh):
            total += int(float(row.get("train_flops") or 0))
            rows.append(
                {
                    "run": rid,
                    "profile": record.run["profile"],
                    "epoch": int(row["epoch"]) + 1,  # epochs completed, so the curve starts at 1
                    "test_top1": round(100 * float(row["test_acc"]), 4) if row.get("test_acc") else "",
                    "train_top1": round(100 * float(row["train_acc"]), 4) if row.get("train_acc") else "",
                    "test_loss": row.get("test_loss", ""),
                    "cum_train_flops": total,
                    "density": row.get("density", ""),
                }
            )
    return rows


def write_dvc_files(records: list[Record], out: Path) -> None:
    """Write ``metrics/``, ``params/`` and ``curves.csv`` for ``records`` into the (empty) folder ``out``."""
    rows: list[dict[str, Any]] = []
    for sub in ("metrics", "params"):  # declared outputs: present even when there is no record
        (out / sub).mkdir(parents=True, exist_ok=True)
    for record in sorted(records, key=run_id):
        rid = run_id(record)
        metric = out / "metrics" / f"{rid}.json"
        metric.parent.mkdir(parents=True, exist_ok=True)
        metric.write_text(json.dumps(run_metrics(record), indent=2, sort_keys=True) + "\n")
        param = out / "params" / f"{rid}.yaml"
        param.parent.mkdir(parents=True, exist_ok=True)
        param.write_text(yaml.safe_dump(run_params(record), sort_keys=True))
        rows.extend(_curve_rows(record, rid))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "curves.csv").write_text(buf.getvalue())
