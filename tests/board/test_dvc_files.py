"""results/dvc/ (what `dvc metrics/params/plots` read): flat per-run metrics, resolved configs, long-form curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from board_fixtures import make_repo, write_record

from spfde_core.board import build_board


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvc_files_are_flat_deterministic_and_follow_the_records(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, seed=0)
    write_record(runs, 0.72, seed=1)
    build_board(repo, plots=False)
    dvc = repo / "results" / "dvc"
    first = _tree(dvc)
    assert set(first) == {
        "curves.csv",
        "metrics/demo/paper-t1-set-s90/seed0.json",
        "metrics/demo/paper-t1-set-s90/seed1.json",
        "params/demo/paper-t1-set-s90/seed0.yaml",
        "params/demo/paper-t1-set-s90/seed1.yaml",
    }
    metrics = json.loads(first["metrics/demo/paper-t1-set-s90/seed1.json"])
    assert metrics["top1"] == 72.0 and metrics["train_flops_ratio"] == 0.2
    assert all(isinstance(v, int | float) for v in metrics.values())  # flat numbers: one DVC column each
    params = yaml.safe_load(first["params/demo/paper-t1-set-s90/seed0.yaml"])
    assert params["sparsity"]["name"] == "set" and "results_dir" not in params["run"]
    with (dvc / "curves.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] * 2
    assert {r["run"] for r in rows} == {"demo/paper-t1-set-s90/seed0", "demo/paper-t1-set-s90/seed1"}

    build_board(repo, plots=False)
    assert _tree(dvc) == first  # byte-identical on regeneration
    (runs / "demo" / "paper-t1-set-s90" / "seed1").rename(tmp_path / "gone")
    build_board(repo, plots=False)
    assert "metrics/demo/paper-t1-set-s90/seed1.json" not in _tree(dvc)  # a removed record's files go
