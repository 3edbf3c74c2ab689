"""How much wall-clock do the sparse kernels save a real training run? (issue 19, deliverable 3)

Claim checked: a `cpu`-profile MEST (EM&S) run at 95% sparsity with the default
``train.sparse_kernels=auto`` (each sparse layer timed both ways, kernels kept where faster,
spfde_core/ops/kernel_probe.py) trains faster than the same run on the masked dense path
(``train.sparse_kernels=off``), per ISA class. Everything else is the default: precision and
layout are ``auto`` (the layout probe picks them as for any run).

Protocol, per class (``--isa native`` = this CPU, ``--isa avx2`` = ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 emulation, our kernels built for AVX2):
- ``run``: the full 30-epoch run with ``auto`` (seed 0), then the reference: the same config with
  ``off`` for ``--reference-epochs`` epochs only (a full masked dense run under AVX2 emulation takes
  hours; an epoch's time does not depend on the learning rate, and the masks keep their density
  under EM&S, so an epoch costs the same throughout). One thread, pinned to ``--pin`` if given.
  Records go to ``results/benchmarks/sparse_kernel_runs/<class>/<row>/seed0/`` (not the leaderboard).
- ``summarise``: per class, the median epoch's training time of each run; the saving is
  ``epochs x (reference median - auto median)``, i.e. the time the auto run would have taken on the
  masked path minus what it took (0 when no layer ran on the kernels: the measured difference is
  then only the machine's noise, reported as such with each run's range of epoch times); the probe's
  own cost lands in the auto run's first epoch and is reported apart (first epoch minus median).
  Per layer, which path ran how often and the probe's times.

Run:  python benchmarks/sparse_kernel_runs.py run --isa native --pin 1
      python benchmarks/sparse_kernel_runs.py run --isa avx2 --pin 1
      python benchmarks/sparse_kernel_runs.py summarise
Writes results/benchmarks/sparse_kernel_runs.json keyed by ISA class.

Last measured: 2026-11-30 / 12-01, 2-core Intel Xeon (AMX), torch 2.14.1, one pinned thread, the other
core training; n = 1 seed per class. avx2 (emulated): auto 178.2 s vs masked 258.6 s a median epoch,
2,413 s (31%) of training saved over 30 epochs, 16 of 18 convolutions on the kernels. amx: 0 kernel
calls (every layer measured faster masked), nothing saved. Details: docs/sparse_kernels.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from isa_classes import AVX2_ENV

from spfde_core import atomic, hardware

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "benchmarks" / "sparse_kernel_runs"
OUT = ROOT / "results" / "benchmarks" / "sparse_kernel_runs.json"
CONFIG = ["profile=cpu", "sparsity=mest_ems", "sparsity.target=0.95", "run.seed=0", "train.progress=false"]
ROW = "cpu-mest_ems-s95"


def reference_row(epochs: int) -> str:
    return f"{ROW}-off-e{epochs}"


def train(isa_class: str, row: str, extra: list[str], env: dict[str, str], pin: int | None) -> None:
    """One `spfde train` in a child process (the ISA variables are read at startup)."""
    args = [*CONFIG, f"run.results_dir={RUNS.relative_to(ROOT)}", f"run.reproduction={isa_class}", f"run.row={row}"]
    cmd = [sys.executable, "-m", "spfde_core.cli", "train", *args, *extra]
    if pin is not None:
        cmd = [sys.executable, "-m", "spfde_core.pin", str(pin), "--", *cmd]
    load = {"before": os.getloadavg()}
    subprocess.run(cmd, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, cwd=ROOT, check=True)
    load["after"] = os.getloadavg()
    atomic.write_json(RUNS / isa_class / row / "seed0" / "load_average.json", {"load_average_1_5_15_min": load})


def run(args: argparse.Namespace) -> None:
    env = AVX2_ENV if args.isa == "avx2" else {}
    isa_class = "avx2" if args.isa == "avx2" else hardware.cpu_isa().isa_class
    if args.only in ("both", "auto"):
        train(isa_class, ROW, ["train.sparse_kernels=auto"], env, args.pin)
    if args.only in ("both", "reference"):
        extra = ["train.sparse_kernels=off", f"train.epochs={args.reference_epochs}"]
        train(isa_class, reference_row(args.reference_epochs), extra, env, args.pin)


def epoch_train_seconds(record_dir: Path) -> list[float]:
    with open(record_dir / "curve.csv", newline="") as f:
        return [float(row["train_s"]) for row in csv.DictReader(f)]


def layer_paths(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per sparse layer: calls on each path, and the probe's decisions (path, both times in ms)."""
    out = []
    for layer in record.get("sparse_kernels", {}).get("layers", []):
        saved = layer.get("decisions") or []
        decisions = [
            {k: d[k] for k in ("path", "masked_ms", "sparse_ms", "cached") if k in d}
            for d in (saved.values() if isinstance(saved, dict) else saved)
        ]
        out.append(
            {
                "name": layer["name"],
                "sparse_calls": layer.get("sparse_calls", 0),
                "masked_calls": layer.get("masked_calls", 0),
                "decisions": decisions,
                "last_masked_reason": layer.get("last_masked_reason"),
            }
        )
    return out


def summarise_class(class_dir: Path) -> dict[str, Any] | None:
    auto_dir = class_dir / ROW / "seed0"
    refs = sorted(p for p in class_dir.glob(f"{ROW}-off-e*/seed0") if (p / "metrics.json").exists())
    if not (auto_dir / "metrics.json").exists() or not refs:
        return None
    auto = json.loads((auto_dir / "metrics.json").read_text())
    ref = json.loads((refs[-1] / "metrics.json").read_text())
    auto_epochs, ref_epochs = epoch_train_seconds(auto_dir), epoch_train_seconds(refs[-1])
    auto_median, ref_median = statistics.median(auto_epochs), statistics.median(ref_epochs)
    saved = len(auto_epochs) * (ref_median - auto_median)
    layers = layer_paths(auto)
    calls = {p: sum(layer[f"{p}_calls"] for layer in layers) for p in ("sparse", "masked")}
    entry = {
        "auto_run": {
            "record": str(auto_dir.relative_to(ROOT)),
            "epochs": len(auto_epochs),
            "wall_clock_s": round(auto["timing"]["wall_clock_s"], 1),
            "train_s": round(sum(auto_epochs), 1),
            "median_epoch_train_s": round(auto_median, 2),
            "first_epoch_excess_s": round(auto_epochs[0] - auto_median, 2),
            "final_top1": auto["results"]["final_top1"],
            "hardware": auto["hardware"],
            "sparse_kernel_calls": calls,
        },
        "reference_run": {
            "record": str(refs[-1].relative_to(ROOT)),
            "sparse_kernels": "off",
            "epochs": len(ref_epochs),
            "median_epoch_train_s": round(ref_median, 2),
            "hardware": ref["hardware"],
        },
        "epoch_speedup": round(ref_median / auto_median, 3),
        "measured_difference_train_s": round(saved, 1),
        # how much epochs of one run vary on this (shared) machine: the scale of noise in the difference
        "epoch_train_s_range": {
            "auto": [round(min(auto_epochs), 1), round(max(auto_epochs), 1)],
            "reference": [round(min(ref_epochs), 1), round(max(ref_epochs), 1)],
        },
        "saved_train_s": round(saved, 1) if calls["sparse"] else 0.0,
        "verdict": (
            "no layer ran on the kernels (auto measured the masked path faster everywhere): nothing saved; "
            "measured_difference_train_s is the machine's noise"
            if not calls["sparse"]
            else ("saved" if saved > 0 else "lost") + f" {abs(saved):.0f} s of training time"
        ),
        "saved_fraction_of_masked_train_time": round(saved / (len(auto_epochs) * ref_median), 3)
        if calls["sparse"]
        else 0.0,
        "layers": layers,
        "environment": auto["provenance"],
        "reference_environment_commit": ref["provenance"]["git"],
    }
    for name, record_dir in (("auto_run", auto_dir), ("reference_run", refs[-1])):
        load = record_dir / "load_average.json"
        if load.exists():
            entry[name].update(json.loads(load.read_text()))
    return entry


def summarise(_: argparse.Namespace) -> None:
    classes = {}
    for class_dir in sorted(p for p in RUNS.glob("*") if p.is_dir()):
        entry = summarise_class(class_dir)
        if entry is None:
            print(f"{class_dir.name}: the auto run or its reference is missing; skipped", file=sys.stderr)
            continue
        classes[class_dir.name] = entry
        print(
            f"{class_dir.name}: auto {entry['auto_run']['median_epoch_train_s']} s/epoch vs masked "
            f"{entry['reference_run']['median_epoch_train_s']} s/epoch ({entry['epoch_speedup']}x), "
            f"kernel calls {entry['auto_run']['sparse_kernel_calls']}: {entry['verdict']}"
        )
    if not classes:
        sys.exit(f"no complete pair of runs under {RUNS}: run `{sys.argv[0]} run --isa native` first")
    atomic.write_json(OUT, {"by_isa_class": classes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="the auto run and its masked reference for one ISA class")
    r.add_argument("--isa", choices=("native", "avx2"), default="native")
    r.add_argument("--reference-epochs", type=int, default=3)
    r.add_argument("--pin", type=int, default=None, help="pin the runs to this CPU core")
    r.add_argument("--only", choices=("both", "auto", "reference"), default="both", help="one of the two runs")
    r.set_defaults(func=run)
    s = sub.add_parser("summarise", help="write the JSON from the committed records")
    s.set_defaults(func=summarise)
    args = parser.parse_args()
    if getattr(args, "reference_epochs", 1) < 1:
        parser.error("--reference-epochs must be >= 1")
    args.func(args)


if __name__ == "__main__":
    main()
