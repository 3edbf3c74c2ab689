"""A failing `leaderboard` stage under real `dvc repro` leaves the committed leaderboard in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import DVC, ROOT, copy_repo
from pipeline_helpers import env as _env

sys.path.insert(0, str(ROOT / "tests" / "board"))
from board_fixtures import write_record  # noqa: E402

OUTS = ("results/LEADERBOARD.md", "results/leaderboard.csv", "results/plots")


def _snapshot(repo: Path) -> dict[str, bytes]:
    files = [repo / OUTS[0], repo / OUTS[1], *sorted((repo / OUTS[2]).glob("*"))]
    return {str(f.relative_to(repo)): f.read_bytes() for f in files if f.is_file()}


def _repro_leaderboard(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DVC, "repro", "--single-item", "leaderboard"],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.smoke
def test_a_failing_leaderboard_stage_keeps_the_committed_files(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)  # the committed leaderboard, and no run records (copy_repo drops them)
    (repo / "results" / "runs").mkdir()
    committed = _snapshot(repo)
    assert "results/leaderboard.csv" in committed and any(k.startswith("results/plots/") for k in committed)
    assert committed["results/leaderboard.csv"].count(b"\n") > 1  # a non-empty leaderboard

    empty = _repro_leaderboard(repo)  # no records: `spfde board` refuses to write an empty leaderboard
    assert empty.returncode != 0, empty.stdout + empty.stderr
    assert "no readable run records" in empty.stderr and "--allow-empty" in empty.stderr
    assert _snapshot(repo) == committed

    bad = write_record(repo / "results" / "runs", 0.7)  # a malformed record: the board fails on it
    bad.write_text(bad.read_text().replace('"final_top1": 0.7', '"final_top1": NaN'))
    broken = _repro_leaderboard(repo)
    assert broken.returncode != 0, broken.stdout + broken.stderr
    assert "results/final_top1" in broken.stderr and "not a finite number" in broken.stderr
    assert _snapshot(repo) == committed
