"""Fixture run records built in the test (schema-valid, no training) and a tiny reproduction spec."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SPEC = """\
reproduction: demo
title: Demo paper
paper: "A. Author, Demo, 2024"
profiles:
  paper: {overrides: [profile=paper], seeds: [0, 1, 2]}
  cpu: {overrides: [profile=cpu], seeds: [0, 1, 2]}
  smoke: {overrides: [profile=smoke], seeds: [0, 1]}
tables:
  - id: t1
    title: "Table 1: demo"
    paper_ref: Table 1
    settings:
      - {id: s90, label: "90%", overrides: [sparsity.target=0.9]}
    entries:
      - {id: set, label: SET, overrides: [sparsity=set]}
      - {id: rigl, label: RigL, overrides: [sparsity=rigl]}
      - {id: deepr, label: DeepR, runnable: false, note: not implemented}
"""
PAPER = """\
table,entry,setting,metric,value,value_high,unit,baseline_entry,baseline_setting,status,source,note
t1,set,s90,top1,70.0,,%,,,found,"Demo Table 1, read from the PDF",
t1,rigl,s90,top1,,,%,,,not_found,Demo Table 1 (not public),
t1,rigl,s90,top1_diff,1.5,,pp,set,s90,found,Demo text Sec. 4,
"""


def base_record() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run": {
            "reproduction": "demo",
            "row": "paper-t1-set-s90",
            "seed": 0,
            "profile": "paper",
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T01:00:00+00:00",
            "resumed_from_epoch": [],
        },
        "config": {
            "profile": "paper",
            "data": {"name": "cifar100"},
            "model": {"name": "resnet32_w2", "width": None},
            "optim": {},
            "train": {"epochs": 3},
            "sparsity": {"name": "set", "target": 0.9},
            "freezing": {"name": "none"},
            "sieving": {"name": "none"},
            "run": {},
        },
        "config_hash": "0123456789ab",
        "non_default": {},
        "results": {
            "epochs": 3,
            "final_top1": 0.7,
            "best_top1": 0.72,
            "best_epoch": 2,
            "final_test_loss": 1.0,
            "final_train_loss": 1.0,
            "final_train_acc": 0.8,
        },
        "timing": {"wall_clock_s": 120.0, "train_s": 100.0, "train_images_per_s": 500.0},
        "data": {
            "name": "cifar100",
            "source": {"kind": "torchvision"},
            "content_sha256": "a" * 64,
            "num_train": 50000,
            "num_test": 10000,
            "num_classes": 100,
        },
        "provenance": {
            "git": {"commit": "deadbeef", "dirty": False},
            "spfde_version": "0.1.0",
            "python": "3.11",
            "versions": {"torch": "2.14"},
            "device": {"type": "cpu", "name": "cpu", "cpu_model": "test"},
        },
        "curve_file": "curve.csv",
        "cost": {
            "training_flops": {"ratio_to_dense": 0.2},
            "memory": {"model": {"avg_bytes": 2**20 * 100}, "measured": {"cpu_peak_rss_bytes": 2**20 * 500}},
        },
    }


def write_record(runs: Path, top1: float, seed: int = 0, entry: str = "set", flops: float = 0.2, **edit: Any) -> Path:
    """A record for row <profile>-t1-<entry>-s90; ``edit`` maps dotted keys to replacement values."""
    record = copy.deepcopy(base_record())
    record["run"]["seed"] = seed
    record["results"]["final_top1"] = top1
    record["results"]["best_top1"] = max(top1, record["results"]["best_top1"])
    record["config"]["sparsity"]["name"] = entry
    record["cost"]["training_flops"]["ratio_to_dense"] = flops
    profile = edit.pop("profile", "paper")
    record["run"]["profile"] = record["config"]["profile"] = profile
    record["run"]["row"] = f"{profile}-t1-{entry}-s90"
    for dotted, value in edit.items():
        node = record
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    run_dir = runs / record["run"]["reproduction"] / record["run"]["row"] / f"seed{record['run']['seed']}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    per_epoch = 1e12 * record["cost"]["training_flops"]["ratio_to_dense"]  # dense epoch = 1e12 FLOPs
    (run_dir / "curve.csv").write_text(
        "epoch,test_acc,train_flops\n" + "".join(f"{e},{top1 * (e + 1) / 3:.4f},{per_epoch:.0f}\n" for e in range(3))
    )
    return run_dir / "metrics.json"


def make_repo(root: Path) -> Path:
    (root / "reproductions" / "demo").mkdir(parents=True)
    (root / "reproductions" / "demo" / "rows.yaml").write_text(SPEC)
    (root / "reproductions" / "demo" / "paper.csv").write_text(PAPER)
    (root / "results" / "runs").mkdir(parents=True)
    return root
