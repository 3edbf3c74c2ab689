"""`spfde board run` end to end: 2 smoke runs in parallel, each pinned to its own core, then the
leaderboard holds both; the same closing commands as in the README."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from pipeline_helpers import DVC, SPFDE, copy_repo, run

from spfde_core.board.shares import available_cpus

pytestmark = pytest.mark.smoke

ROW = "spfde_neurips22/smoke-t2-dense-ref"
KEYS = [f"spfde_neurips22-smoke-t2-dense-ref-seed{s}" for s in (0, 1)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy planned for one smoke row with seeds 0 and 1 (2 runs), nothing trained."""
    repo = copy_repo(tmp_path_factory.mktemp("template"))
    run([*SPFDE, "board", "plan", "--profile", "smoke", "--all", "--only", ROW, "--seeds", "0,1"], repo)
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "repo", symlinks=True))


def _records(repo: Path) -> list[dict]:
    paths = [repo / "results" / "runs" / ROW / f"seed{s}" / "metrics.json" for s in (0, 1)]
    assert all(p.exists() for p in paths), [p for p in paths if not p.exists()]
    return [json.loads(p.read_text()) for p in paths]


def _leaderboard_has_both_runs(repo: Path) -> None:
    with (repo / "results" / "leaderboard.csv").open() as fh:
        cells = list(csv.DictReader(fh))
    assert [(c["entry"], c["n"], c["profile"]) for c in cells] == [("dense", "2", "smoke")]
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    assert all(f"(runs/{ROW}/seed{s}/metrics.json)" in md for s in (0, 1)), md


@pytest.mark.skipif(len(available_cpus()) < 2, reason="pinning 2 workers to a core each needs 2 cores")
def test_board_run_pins_two_parallel_runs_then_dvc_rebuilds_only_the_leaderboard(repo: Path) -> None:
    out = run([*SPFDE, "board", "run", "--jobs", "2", "--cpus-per-job", "1", "--gpus", "none"], repo)
    cores, shares = available_cpus()[:2], set()
    for key in KEYS:
        log = (repo / "checkpoints" / "logs" / f"{key}.log").read_text()
        share = re.search(r"share (\d): cpus (\d+) \(OMP_NUM_THREADS=1\), CUDA_VISIBLE_DEVICES=\(none\)", log)
        assert share, log[:500]
        # Printed by the child itself after pinning, just before it becomes the training process:
        seen = re.search(r"pinned: pid \d+ affinity (\S+) OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=\n", log)
        assert seen and seen.group(1) == share.group(2) == str(cores[int(share.group(1))]), log[:500]
        shares.add(share.group(1))
    assert shares == {"0", "1"}  # each run had its own core
    starts, ends = zip(*((r["run"]["started_at"], r["run"]["finished_at"]) for r in _records(repo)), strict=True)
    assert max(starts) < min(ends)  # the two trainings overlapped in time

    commit = re.search(r"all done: `dvc (commit -f prepare train)` records them", out)  # not the stale leaderboard
    assert commit, out
    run([DVC, *commit.group(1).split()], repo)
    out = run([DVC, "repro"], repo)
    assert "Running stage 'leaderboard'" in out and "Running stage 'train@" not in out, out
    _leaderboard_has_both_runs(repo)
