"""`spfde board run --jobs N`: the planned runs (params.yaml) in parallel on this machine, each worker
pinned to its own device share (``shares``: disjoint cores, one GPU each).

A worker takes the next run without a record, starts ``spfde train <args>`` through
``python -m spfde_core.pin <cores> --`` (affinity set, then exec) with ``OMP_NUM_THREADS`` = its core
count and its ``CUDA_VISIBLE_DEVICES``, and appends the run's output to ``checkpoints/logs/<key>.log``
after a header saying when and on which share the attempt started (a run resumed from its checkpoint
keeps the log of its earlier attempts). Records land in the plan's outs, so ``dvc commit -f
prepare train`` (``commit_command``) then records them in dvc.lock and ``dvc repro`` only rebuilds the
leaderboard.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import queue
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from spfde_core.board.pipeline import check_plan, pending_summary, read_params
from spfde_core.board.shares import Share, available_cpus, plan_shares, resolve_gpus, visible_gpus

log = logging.getLogger("spfde_core.board")

LOG_DIR = Path("checkpoints") / "logs"


def pending_runs(repo: Path, only: list[str] | None = None) -> list[tuple[str, dict[str, str]]]:
    """(stage key, plan item) of every planned run matching ``only`` (globs) that has no record yet.

    Checks first that params.yaml is up to date (PlanError naming the fix otherwise).
    """
    repo = Path(repo)
    check_plan(repo)
    runs = read_params(repo).get("runs") or {}
    return [
        (k, v)
        for k, v in runs.items()
        if (not only or any(fnmatch.fnmatch(k, p) for p in only)) and not (repo / v["out"] / "metrics.json").exists()
    ]


def rebuild_command(repo: Path) -> str:
    """The ``dvc repro`` that rebuilds the leaderboard after ``commit_command``.

    With every planned run recorded a plain ``dvc repro`` has nothing left to train. After a partial
    run it would train every planned run still missing (hundreds, for a whole profile), so
    the leaderboard stage is then rebuilt alone (``--single-item``).
    """
    runs = read_params(repo).get("runs") or {}
    missing = [k for k, v in runs.items() if not (Path(repo) / v["out"] / "metrics.json").exists()]
    return "dvc repro --single-item leaderboard" if missing else "dvc repro"


def commit_command(repo: Path) -> str:
    """The ``dvc commit`` that records the finished runs: their train stages and the prepared data.

    Not the leaderboard stage, which is stale until ``dvc repro`` rebuilds it (a bare ``dvc commit -f``
    would record the old leaderboard as up to date). All planned runs recorded: ``prepare train``;
    otherwise the recorded stages by name (DVC refuses to commit a stage whose out is missing).
    """
    params = read_params(repo)
    datasets, runs = params.get("datasets") or {}, params.get("runs") or {}
    done = [k for k, v in runs.items() if (Path(repo) / v["out"] / "metrics.json").exists()]
    ready = [k for k, v in datasets.items() if (Path(repo) / v["out"]).exists()]
    prepare = ["prepare"] if len(ready) == len(datasets) else [f"prepare@{k}" for k in ready]
    train = ["train"] if len(done) == len(runs) else [f"train@{k}" for k in done]
    return " ".join(["dvc commit -f", *prepare, *train])


def train_command(args: str) -> list[str]:
    """The `spfde train` command of a plan item's ``args`` (this checkout's code, no progress bars)."""
    return [sys.executable, "-m", "spfde_core.cli", "train", *shlex.split(args), "train.progress=false"]


def worker_shares(jobs: int, cpus_per_job: int | None = None, gpus: str | None = None) -> list[Share]:
    """The shares of ``jobs`` workers on this machine; ShareError (naming the option) if impossible."""
    return plan_shares(jobs, available_cpus(), cpus_per_job, resolve_gpus(gpus, visible_gpus()))


def run_planned(
    repo: Path,
    jobs: int = 1,
    only: list[str] | None = None,
    dry_run: bool = False,
    cpus_per_job: int | None = None,
    gpus: str | None = None,
) -> list[str]:
    """Train every planned run whose record is missing, ``jobs`` at a time; returns the failed keys.

    Args:
        repo: repository root (holds params.yaml).
        jobs: runs at a time; each of the ``jobs`` workers owns one device share.
        only: stage-key globs to restrict to.
        dry_run: print each command and its share, train nothing.
        cpus_per_job: cores per worker (default: all cores split evenly).
        gpus: ``--gpus``: auto (default), none, or GPU indices like ``0,1``.

    Raises:
        ShareError: an impossible request, before any run starts.
        PlanError: params.yaml stale or unreadable.
    """
    repo = Path(repo)
    shares = worker_shares(jobs, cpus_per_job, gpus)  # refuse an impossible request before anything runs
    todo = pending_runs(repo, only)
    log.info("%d planned run(s) to train, %d at a time", len(todo), jobs)
    if todo:
        print(pending_summary(repo, [k for k, _ in todo], read_params(repo)["profile"], "spfde board run"), flush=True)
    for share in shares:
        log.info("worker %s", share.describe())
    if dry_run:
        for i, (key, item) in enumerate(todo):
            print(f"{key} [{shares[i % len(shares)].describe()}]: spfde train {item['args']}")
        return []
    free: queue.Queue[Share] = queue.Queue()
    for share in shares:
        free.put(share)

    def one(key_item: tuple[str, dict[str, str]]) -> str | None:
        key, item = key_item
        share = free.get()  # a worker's share is never used by two runs at once
        try:
            rc = _train(repo, key, item["args"], share)
        finally:
            free.put(share)
        log.info("%s: %s (%s)", key, "done" if rc == 0 else f"FAILED (exit {rc})", repo / LOG_DIR / f"{key}.log")
        return None if rc == 0 else key

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [k for k in pool.map(one, todo) if k]
    if not failed:
        log.info(
            "all done: `%s` records them in dvc.lock; `%s` then rebuilds the leaderboard",
            commit_command(repo),
            rebuild_command(repo),
        )
    return failed


def _train(repo: Path, key: str, args: str, share: Share) -> int:
    """One run in ``share``: pinned through spfde_core.pin, output appended to its log file; the exit status."""
    logfile = repo / LOG_DIR / f"{key}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **share.env()}
    cpus = ",".join(map(str, share.cpus))
    cmd = [sys.executable, "-m", "spfde_core.pin", cpus, "--", *train_command(args)]
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    with logfile.open("a") as fh:  # append: an earlier attempt's log (before a resume) is never lost
        fh.write(f"# spfde board run: {key}: {share.describe()}, started {started}\n# {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.call(cmd, cwd=repo, env=env, stdout=fh, stderr=subprocess.STDOUT)
