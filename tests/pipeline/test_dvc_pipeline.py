"""The whole pipeline, for real: plan, `dvc repro` (data, trainings, leaderboard), then nothing left to do."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import DVC, ROOT, copy_repo
from pipeline_helpers import env as _env
from pipeline_helpers import run as _run

ROWS = ["spfde_neurips22/smoke-t2-dense-ref", "spfde_neurips22/smoke-t2-mest-s90"]


def _plan(repo: Path, *extra: str) -> None:
    only = [a for row in ROWS for a in ("--only", row)]
    _run([sys.executable, "-m", "spfde_core.cli", "board", "plan", "--profile", "smoke", "--all", *only, *extra], repo)


def test_plan_covers_every_smoke_row_and_check_catches_a_stale_plan(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    _run([sys.executable, "-m", "spfde_core.cli", "board", "plan", "--profile", "smoke", "--all"], repo)  # every row
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["profile"] == "smoke" and len(params["runs"]) >= 40
    assert all(item["args"].startswith("profile=smoke") for item in params["runs"].values())
    assert all((repo / item[k]).exists() for item in params["runs"].values() for k in item if k.startswith("conf_"))
    _run([sys.executable, "-m", "spfde_core.cli", "board", "plan", "--check"], repo)
    text = (repo / "params.yaml").read_text().replace("profile: smoke", "profile: cpu", 1)
    (repo / "params.yaml").write_text(text)
    stale = subprocess.run(
        [sys.executable, "-m", "spfde_core.cli", "board", "plan", "--check"],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert stale.returncode == 2, stale.stderr
    assert "spfde board plan --profile cpu" in stale.stderr


@pytest.mark.smoke
def test_dvc_repro_runs_the_smoke_pipeline_then_has_nothing_to_do(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    _plan(repo)
    out = _run([DVC, "repro"], repo)
    assert out.count("Running stage 'train@") == 4 and "Running stage 'leaderboard'" in out
    for row in ROWS:
        for seed in (0, 1):
            assert (repo / "results" / "runs" / row / f"seed{seed}" / "metrics.json").exists()
    with (repo / "results" / "leaderboard.csv").open() as fh:
        cells = {r["entry"]: r for r in csv.DictReader(fh)}
    assert set(cells) == {"dense", "mest"} and all(c["n"] == "2" and c["profile"] == "smoke" for c in cells.values())
    assert float(cells["mest"]["train_flops_ratio"]) < float(cells["dense"]["train_flops_ratio"])
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    assert "MEST (EM&S)" in md and "(runs/spfde_neurips22/smoke-t2-mest-s90/seed1/metrics.json)" in md
    assert sorted(p.name.split("-")[0] for p in (repo / "results" / "plots").glob("*.png")) == ["curves", "pareto"]
    again = _run([DVC, "repro"], repo)
    assert "Running stage" not in again, again
    assert "up to date" in _run([DVC, "status"], repo)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_every_planned_row_composes_and_validates(profile: str) -> None:
    from spfde_core.board.pipeline import plan

    params = plan(ROOT, profile, include_missing=True)  # raises PlanError naming the row whose config fails
    assert all(f"profile={profile}" in item["args"] for item in params["runs"].values())


@pytest.mark.smoke
def test_dvc_repro_trains_a_continual_learning_smoke_row(tmp_path: Path) -> None:
    """SparCL's smoke row (TDM + DDR + DGM on DER++) through the same DVC stages as every other row."""
    import json

    repo = copy_repo(tmp_path)
    row = "sparcl_neurips22/smoke-main-sparcl-s75"
    plan = ["board", "plan", "--profile", "smoke", "--all", "--only", row, "--seeds", "0"]
    _run([sys.executable, "-m", "spfde_core.cli", *plan], repo)
    out = _run([DVC, "repro"], repo)
    assert out.count("Running stage 'train@") == 1 and "Running stage 'leaderboard'" in out
    record = json.loads((repo / "results" / "runs" / row / "seed0" / "metrics.json").read_text())
    assert record["continual_ddr"]["removed_total"] == 5 * 30 and len(record["continual"]["acc_matrix"]) == 5
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    assert "task-IL %" in md and f"(runs/{row}/seed0/metrics.json)" in md
    assert "Running" not in _run([DVC, "repro"], repo)  # recorded: nothing left to do
