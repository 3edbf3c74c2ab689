"""DVC's own tools on real records: `dvc metrics show/diff`, `dvc params diff`, `dvc plots show/diff`, `dvc exp run`.

A temporary git + DVC copy of the repository trains one smoke row with `dvc repro`, commits, then trains a second
row as a DVC experiment (`dvc exp run`, the supported path: docs/integrations.md) and compares the two.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pipeline_helpers import DVC, SPFDE, copy_repo, env
from pipeline_helpers import run as _run

DENSE, MEST = "spfde_neurips22/smoke-t2-dense-ref", "spfde_neurips22/smoke-t2-mest-s90"
CURVE_PLOTS = (
    "Top-1 over epochs (one line per run)",
    "Cumulative training FLOPs over epochs",
    "Top-1 against cumulative training FLOPs",
)


def _plan(repo: Path, row: str) -> None:
    help_text = _run([*SPFDE, "board", "plan", "--help"], repo)
    every = ["--all"] if "--all" in help_text else []  # plan runs that have no record yet, too
    _run([*SPFDE, "board", "plan", "--profile", "smoke", *every, "--only", row, "--seeds", "0"], repo)


def _json(cmd: list[str], repo: Path) -> dict:
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600, env=env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _commit(repo: Path, message: str) -> None:
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


@pytest.mark.smoke
def test_dvc_metrics_params_plots_and_exp_run_on_real_records(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    _plan(repo, DENSE)
    _run([DVC, "repro"], repo)
    dense_metrics = f"results/dvc/metrics/{DENSE}/seed0.json"
    shown = _json([DVC, "metrics", "show", "--json"], repo)
    values = shown[""]["data"][dense_metrics]["data"]  # "": the workspace
    record = json.loads((repo / "results" / "runs" / DENSE / "seed0" / "metrics.json").read_text())
    # The metrics file keeps 4 decimals (board/dvc_files.py); a smoke top-1 such as 55/128 has more.
    assert values["top1"] == round(100 * record["results"]["final_top1"], 4)
    assert values["train_flops_ratio"] == pytest.approx(1.0) and values["train_flops"] > 0
    table = _run([DVC, "metrics", "show"], repo)
    assert dense_metrics in table and "train_flops_ratio" in table

    plots = _json([DVC, "plots", "show", "--json"], repo)
    assert not plots.get("errors"), plots.get("errors")
    for name in (*CURVE_PLOTS, "results/leaderboard.csv"):
        assert plots["data"][name] and plots["data"][name][0]["type"] == "vega", name
    points = plots["data"][CURVE_PLOTS[2]][0]["content"]["data"]["values"]
    assert {p["run"] for p in points} == {f"{DENSE}/seed0"}
    flops = [int(p["cum_train_flops"]) for p in points]
    assert flops == sorted(flops) and flops[0] > 0  # cumulative, one point per epoch
    _commit(repo, "dense")

    # The supported experiment path: plan another row, then `dvc exp run` (docs/integrations.md).
    _plan(repo, MEST)
    out = _run([DVC, "exp", "run", "-n", "mest-smoke"], repo)
    assert "Running stage 'train@" in out and "Running stage 'leaderboard'" in out
    exps = _run([DVC, "exp", "show", "--no-pager", "--csv"], repo)
    assert "mest-smoke" in exps and "top1" in exps

    metrics_diff = _json([DVC, "metrics", "diff", "HEAD", "--json"], repo)
    assert "top1" in metrics_diff[f"results/dvc/metrics/{MEST}/seed0.json"]
    params_diff = _json([DVC, "params", "diff", "HEAD", "--json"], repo)
    mest_params = params_diff[f"results/dvc/params/{MEST}/seed0.yaml"]
    assert mest_params["sparsity.target"]["new"] == pytest.approx(0.9)
    assert mest_params["optim.lr"]["new"] == pytest.approx(record["config"]["optim"]["lr"])
    assert mest_params["sparsity.name"]["new"].startswith("mest")

    diff = _json([DVC, "plots", "diff", "HEAD", "--json"], repo)
    assert not diff.get("errors"), diff.get("errors")
    points = diff["data"][CURVE_PLOTS[0]][0]["content"]["data"]["values"]
    assert {p["rev"] for p in points} == {"HEAD", "workspace"}
    assert {p["run"] for p in points if p["rev"] == "workspace"} == {f"{DENSE}/seed0", f"{MEST}/seed0"}
