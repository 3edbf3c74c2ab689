"""`spfde board sweep`: the planned runs as a Hydra multirun, so any Hydra launcher can run them.

    spfde board sweep hydra/launcher=submitit_local                   # parallel jobs on this machine
    spfde board sweep hydra/launcher=slurm hydra.launcher.partition=gpu   # a SLURM job per run

The sweep is over the plan's stage keys (``key=k1,k2,...``: every planned run without a record), so
each job trains exactly one ``train@<key>`` stage of dvc.yaml with its overrides and writes the
record into that stage's declared out (on the shared file system a cluster mounts the checkout
from). Afterwards, as after `spfde board run`: ``dvc commit -f prepare train`` records the runs in
dvc.lock and ``dvc repro`` rebuilds only the leaderboard.

A job starts ``spfde train`` as a subprocess (Hydra's state in the job process cannot compose the
training config again), under torchrun when ``nproc_per_node > 1``; its thread count is the job's
core share (``OMP_NUM_THREADS`` = the cores the job may use, per process), unless already set.
Why Hydra's submitit launcher and not DVC's experiment queue: docs/distributed.md, "Sweeps".
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from spfde_core.board.pipeline import PlanError, pending_summary, read_params
from spfde_core.board.runner import commit_command, pending_runs, rebuild_command, train_command
from spfde_core.board.shares import available_cpus
from spfde_core.pin import format_cpus

log = logging.getLogger("spfde_core.board")


def _quoted(value: str) -> str:
    """A Hydra override value, quoted (keys and paths may hold characters the grammar reserves)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sweep_command(repo: Path, keys: list[str], overrides: list[str]) -> list[str]:
    """The Hydra multirun command that trains ``keys`` of ``repo``'s plan with ``overrides`` (launcher...)."""
    if not keys:
        raise PlanError("sweep: no keys to run")
    return [
        sys.executable,
        "-m",
        "spfde_core.board.sweep",
        "--multirun",
        "key=" + ",".join(_quoted(k) for k in keys),
        f"repo={_quoted(str(Path(repo).resolve()))}",
        *overrides,
    ]


def sweep(repo: Path, only: list[str] | None = None, overrides: list[str] | None = None, dry_run: bool = False) -> int:
    """Launch one Hydra job per pending planned run; returns the number of runs launched.

    Raises:
        PlanError: stale plan, or the multirun failed (with its exit status).
    """
    repo = Path(repo)
    todo = [key for key, _ in pending_runs(repo, only)]
    if not todo:
        log.info("nothing to sweep: every planned run matching %s has a record", only or "*")
        return 0
    cmd = sweep_command(repo, todo, list(overrides or []))
    print(pending_summary(repo, todo, read_params(repo)["profile"], "spfde board sweep"), flush=True)
    if dry_run:
        print(shlex.join(cmd))
        return len(todo)
    log.info("sweeping %d planned run(s) through Hydra: %s", len(todo), shlex.join(cmd[3:5]))
    rc = subprocess.call(cmd, cwd=repo)
    if rc != 0:
        raise PlanError(f"sweep: the Hydra multirun failed (exit {rc}); job logs under checkpoints/sweeps/")
    log.info(
        "sweep done: `%s` records the runs in dvc.lock; `%s` then rebuilds the leaderboard",
        commit_command(repo),
        rebuild_command(repo),
    )
    return len(todo)


def job_command(args: str, nproc_per_node: int) -> list[str]:
    """`spfde train <args>`, under torchrun (standalone, this node) when ``nproc_per_node > 1``."""
    if nproc_per_node < 1:
        raise PlanError(f"nproc_per_node: expected a positive number of processes, got {nproc_per_node}")
    cmd = train_command(args)
    if nproc_per_node == 1:
        return cmd
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
    return [*torchrun, *cmd[1:]]


def train_planned(repo: Path, key: str, nproc_per_node: int = 1) -> str:
    """Train the planned run ``key`` (one sweep job); returns its record folder.

    A run that already has a record is skipped (a requeued or repeated job); a run with a checkpoint
    resumes from it. Raises PlanError for an unknown key, RuntimeError when training fails.
    """
    repo = Path(repo)
    runs = read_params(repo).get("runs") or {}
    if key not in runs:
        raise PlanError(f"key: {key!r} is not a planned run of {repo / 'params.yaml'} (`dvc stage list` shows them)")
    item = runs[key]
    if (repo / item["out"] / "metrics.json").exists():
        log.info("%s: already recorded in %s; nothing to do", key, item["out"])
        return item["out"]
    cpus = available_cpus()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(cpus) // nproc_per_node)))
    print(
        f"# spfde board sweep: {key}: pid {os.getpid()} cpus {format_cpus(cpus)} "
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(unset)')}",
        flush=True,
    )
    rc = subprocess.call(job_command(item["args"], nproc_per_node), cwd=repo, env=env)
    if rc != 0:
        raise RuntimeError(f"{key}: spfde train exited with status {rc}")
    return item["out"]


@hydra.main(config_path="pkg://spfde_core.board.sweep_conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> str:
    """One sweep job (Hydra task function): ``key``, ``repo`` and ``nproc_per_node`` from the config."""
    return train_planned(Path(cfg.repo), str(cfg.key), int(cfg.nproc_per_node))


if __name__ == "__main__":
    main()
