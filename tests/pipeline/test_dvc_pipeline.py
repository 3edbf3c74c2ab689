"""The whole pipeline, for real: plan, `dvc repro` (data, trainings, leaderboard), then nothing left to do."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DVC = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
ROWS = ["spfde_neurips22/smoke-t2-dense-ref", "spfde_neurips22/smoke-t2-mest-s90"]


def copy_repo(dest: Path) -> Path:
    """The repository as a fresh clone would have it: tracked and unignored files, plus .dvc's config."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for name in ("config", ".gitignore"):
        if (ROOT / ".dvc" / name).exists():
            (dest / ".dvc").mkdir(exist_ok=True)
            shutil.copy2(ROOT / ".dvc" / name, dest / ".dvc" / name)
    shutil.rmtree(dest / "results" / "runs", ignore_errors=True)  # only this test's runs
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    if not (dest / ".dvc" / "config").exists():
        subprocess.run([DVC, "init", "-q"], cwd=dest, check=True)
    return dest


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, OMP_NUM_THREADS="1", PYTHONPATH="")


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _plan(repo: Path, *extra: str) -> None:
    only = [a for row in ROWS for a in ("--only", row)]
    _run([sys.executable, "-m", "spfde_core.cli", "board", "plan", "--profile", "smoke", *only, *extra], repo)


def test_plan_covers_every_smoke_row_and_check_catches_a_stale_plan(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    _run([sys.executable, "-m", "spfde_core.cli", "board", "plan", "--profile", "smoke"], repo)  # composes every row
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

    params = plan(ROOT, profile)  # raises PlanError naming the row whose config fails
    assert all(f"profile={profile}" in item["args"] for item in params["runs"].values())
