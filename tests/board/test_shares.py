"""Device shares of `spfde board run` (pure logic)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from spfde_core.board.runner import commit_command, rebuild_command
from spfde_core.board.shares import Share, ShareError, plan_shares, resolve_gpus
from spfde_core.pin import format_cpus, parse_cpus


def test_cores_are_split_into_disjoint_balanced_shares() -> None:
    shares = plan_shares(3, list(range(8)))
    assert [s.cpus for s in shares] == [(0, 1), (2, 3, 4), (5, 6, 7)]
    assert [s.env()["OMP_NUM_THREADS"] for s in shares] == ["2", "3", "3"]
    assert all(s.gpu is None and "CUDA_VISIBLE_DEVICES" not in s.env() for s in shares)
    fixed = plan_shares(2, [4, 5, 6, 7, 9], cpus_per_job=2)  # the affinity mask, not 0..n-1
    assert [s.cpus for s in fixed] == [(4, 5), (6, 7)]
    assert fixed[1].describe() == "share 1: cpus 6-7 (OMP_NUM_THREADS=2)"


@pytest.mark.parametrize(
    ("jobs", "cpus_per_job", "message"),
    [
        (5, None, r"--jobs 5: more runs at a time than cores; this process may use 4 core\(s\): 0-3"),
        (3, 2, r"--jobs 3 x --cpus-per-job 2 needs 6 cores; this process may use 4"),
        (0, None, r"--jobs: expected a positive number"),
        (1, 0, r"--cpus-per-job: expected a positive number"),
    ],
)
def test_impossible_cpu_requests_name_the_option(jobs: int, cpus_per_job: int | None, message: str) -> None:
    with pytest.raises(ShareError, match=message):
        plan_shares(jobs, range(4), cpus_per_job)


def test_each_worker_gets_its_own_gpu_and_ids_follow_the_parents_visible_devices() -> None:
    visible = ["2", "3", "5"]  # the parent runs under CUDA_VISIBLE_DEVICES=2,3,5
    assert resolve_gpus(None, visible) == resolve_gpus("auto", visible) == visible
    assert resolve_gpus("2,0", visible) == ["5", "2"]
    assert resolve_gpus("none", visible) == [] and resolve_gpus(None, []) is None
    shares = plan_shares(2, range(4), gpus=resolve_gpus("2,0", visible))
    assert [(s.cpus, s.env()["CUDA_VISIBLE_DEVICES"]) for s in shares] == [((0, 1), "5"), ((2, 3), "2")]
    hidden = plan_shares(2, range(2), gpus=[])
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in hidden] == ["", ""]
    assert hidden[0].describe().endswith("CUDA_VISIBLE_DEVICES=(none)")
    with pytest.raises(ShareError, match=r"unknown GPU id\(s\) \[3\]; this process sees 3 GPU\(s\) \(ids 0..2\)"):
        resolve_gpus("0,3", visible)
    with pytest.raises(ShareError, match=r"^--gpus: unknown GPU id\(s\) \[0\]; this process sees 0 GPU\(s\)"):
        resolve_gpus("0", [])
    with pytest.raises(ShareError, match="--gpus: GPU ids repeat"):
        resolve_gpus("1,1", visible)
    with pytest.raises(ShareError, match="--gpus: expected auto, none or comma-separated GPU indices"):
        resolve_gpus("cuda:0", visible)
    with pytest.raises(ShareError, match=r"--jobs 3 but --gpus gives 2 GPU\(s\) \(2,3\): one run per GPU"):
        plan_shares(3, range(6), gpus=["2", "3"])


def test_cpu_lists_round_trip() -> None:
    assert format_cpus([5, 0, 1, 2, 8, 9]) == "0-2,5,8-9"
    assert parse_cpus("0-2,5,8-9") == (0, 1, 2, 5, 8, 9)
    with pytest.raises(ValueError):
        parse_cpus("3-1")


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity API here")
def test_pin_wrapper_pins_then_becomes_the_command() -> None:
    cpu = sorted(__import__("os").sched_getaffinity(0))[-1]
    code = "import os; print('child sees', sorted(os.sched_getaffinity(0)), os.getpid())"
    out = subprocess.run(
        [sys.executable, "-m", "spfde_core.pin", str(cpu), "--", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    pid = out[0].split()[2]
    assert out[0].startswith(f"pinned: pid {pid} affinity {cpu} ") and out[1] == f"child sees [{cpu}] {pid}"
    bad = subprocess.run([sys.executable, "-m", "spfde_core.pin", "x", "--", "true"], capture_output=True, text=True)
    assert bad.returncode == 2 and "CPUS: expected a list like 0-3,8" in bad.stderr


def test_share_is_hashable_and_frozen() -> None:
    share = Share(0, (1,))
    with pytest.raises(AttributeError):
        share.cpus = (2,)  # type: ignore[misc]


def test_commit_command_names_only_recorded_stages_and_never_the_leaderboard(tmp_path) -> None:
    runs = {k: {"args": "", "out": f"results/runs/x/{k}"} for k in ("k0", "k1")}
    datasets = {"d": {"args": "", "out": "data/prepared/d"}, "e": {"args": "", "out": "data/prepared/e"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": datasets, "runs": runs}))
    (tmp_path / "data/prepared/d").mkdir(parents=True)
    (tmp_path / "results/runs/x/k1").mkdir(parents=True)
    (tmp_path / "results/runs/x/k1/metrics.json").write_text("{}")
    assert commit_command(tmp_path) == "dvc commit -f prepare@d train@k1"  # DVC refuses missing outs
    # a plain `dvc repro` would now train k0 (and, for a whole profile, hundreds more)
    assert rebuild_command(tmp_path) == "dvc repro --single-item leaderboard"
    (tmp_path / "data/prepared/e").mkdir(parents=True)
    (tmp_path / "results/runs/x/k0").mkdir(parents=True)
    (tmp_path / "results/runs/x/k0/metrics.json").write_text("{}")
    assert commit_command(tmp_path) == "dvc commit -f prepare train"
    assert rebuild_command(tmp_path) == "dvc repro"


def test_a_resumed_runs_log_keeps_its_earlier_attempts(tmp_path, monkeypatch) -> None:
    from spfde_core.board import runner

    def fake_call(cmd, cwd, env, stdout, stderr):  # stands in for the training process
        stdout.write(f"training output, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}\n")
        return 0

    monkeypatch.setattr(runner.subprocess, "call", fake_call)
    share = plan_shares(1, [0])[0]
    assert runner._train(tmp_path, "k", "train.epochs=1", share) == 0
    assert runner._train(tmp_path, "k", "train.epochs=1", share) == 0  # the resume after a cut
    lines = (tmp_path / runner.LOG_DIR / "k.log").read_text().splitlines()
    headers = [line for line in lines if line.startswith("# spfde board run: k: share 0: cpus 0")]
    assert len(headers) == 2 and all("started 20" in h for h in headers)
    assert lines.count("training output, OMP_NUM_THREADS=1") == 2
