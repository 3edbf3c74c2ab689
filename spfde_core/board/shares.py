"""Device shares of `spfde board run --jobs N`: which cores and which GPU each parallel worker gets.

Pure logic (no process is started here), so every refusal happens before any run starts:

- CPU: the cores this process may use (``os.sched_getaffinity``) are split into N disjoint,
  contiguous shares (``--cpus-per-job k``: k cores each; default: all cores, as evenly as possible).
  A worker's runs are pinned to its share and get ``OMP_NUM_THREADS`` = its size.
- GPU: with ``--gpus 0,1`` (or every visible GPU by default) worker i gets ``CUDA_VISIBLE_DEVICES``
  = the i-th id; at most one worker per GPU, so two concurrent runs never share one. ``--gpus none``
  hides the GPUs (CPU runs on a GPU machine).

Ids in ``--gpus`` are indices of the GPUs this process sees: under ``CUDA_VISIBLE_DEVICES=2,3``,
``--gpus 1`` is physical GPU 3, and the child gets ``CUDA_VISIBLE_DEVICES=3``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from spfde_core.config import ConfigError
from spfde_core.pin import format_cpus


class ShareError(ConfigError):
    """An impossible ``--jobs`` / ``--cpus-per-job`` / ``--gpus`` request; names the option."""


@dataclass(frozen=True)
class Share:
    """One worker's devices: the cores its runs are pinned to and its GPU (None: GPUs untouched)."""

    index: int
    cpus: tuple[int, ...]
    gpu: str | None = None

    def env(self) -> dict[str, str]:
        """Environment variables of a run in this share (thread pools sized to the share)."""
        env = {"OMP_NUM_THREADS": str(len(self.cpus)), "MKL_NUM_THREADS": str(len(self.cpus))}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        """One line for the run's log, e.g. ``share 2: cpus 4-7 (OMP_NUM_THREADS=4), CUDA_VISIBLE_DEVICES=1``."""
        gpu = "" if self.gpu is None else f", CUDA_VISIBLE_DEVICES={self.gpu or '(none)'}"
        return f"share {self.index}: cpus {format_cpus(self.cpus)} (OMP_NUM_THREADS={len(self.cpus)}){gpu}"


def available_cpus() -> tuple[int, ...]:
    """The cores this process may run on (its affinity mask; all cores where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def visible_gpus() -> list[str]:
    """Ids to hand to children for the GPUs this process sees (their CUDA_VISIBLE_DEVICES entries)."""
    import torch

    count = torch.cuda.device_count()
    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    if parent:
        ids = [p.strip() for p in parent.split(",") if p.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def resolve_gpus(spec: str | None, visible: Sequence[str]) -> list[str] | None:
    """The GPU ids of ``--gpus``: None = leave CUDA_VISIBLE_DEVICES alone (no GPU here), [] = hide them.

    ``spec`` is None/``auto`` (every visible GPU), ``none`` (hide them) or comma-separated indices
    into ``visible`` (no repeats).
    """
    if spec is None or spec == "auto":
        return list(visible) if visible else None
    if spec == "none":
        return []
    try:
        indices = [int(p) for p in spec.split(",")]
    except ValueError:
        raise ShareError(f"--gpus: expected auto, none or comma-separated GPU indices like 0,1; got {spec!r}") from None
    unknown = [i for i in indices if not 0 <= i < len(visible)]
    if unknown:
        seen = f"0..{len(visible) - 1}" if visible else "none"
        raise ShareError(f"--gpus: unknown GPU id(s) {unknown}; this process sees {len(visible)} GPU(s) (ids {seen})")
    if len(set(indices)) != len(indices):
        raise ShareError(f"--gpus: GPU ids repeat in {spec!r}; each worker needs a GPU of its own")
    return [visible[i] for i in indices]


def plan_shares(
    jobs: int, cpus: Sequence[int], cpus_per_job: int | None = None, gpus: Sequence[str] | None = None
) -> list[Share]:
    """One share per worker: disjoint core sets and, when ``gpus`` is given, distinct GPUs.

    Args:
        jobs: workers (runs at a time), >= 1.
        cpus: cores to split (``available_cpus()``).
        cpus_per_job: cores per worker; default: ``len(cpus) // jobs``, the remainder going one
            each to the first workers.
        gpus: ids from ``resolve_gpus``: None leaves the GPUs alone, [] hides them, else worker i
            gets ``gpus[i]`` (needs ``jobs <= len(gpus)``).

    Raises:
        ShareError: naming the option, when the request cannot be met.
    """
    if jobs < 1:
        raise ShareError(f"--jobs: expected a positive number of runs at a time, got {jobs}")
    cores = sorted(set(cpus))
    n = len(cores)
    where = f"this process may use {n} core(s): {format_cpus(cores)}"
    if cpus_per_job is not None:
        if cpus_per_job < 1:
            raise ShareError(f"--cpus-per-job: expected a positive number of cores, got {cpus_per_job}")
        if jobs * cpus_per_job > n:
            raise ShareError(
                f"--jobs {jobs} x --cpus-per-job {cpus_per_job} needs {jobs * cpus_per_job} cores; {where}"
            )
        bounds = [(i * cpus_per_job, (i + 1) * cpus_per_job) for i in range(jobs)]
    else:
        if jobs > n:
            raise ShareError(f"--jobs {jobs}: more runs at a time than cores; {where} (use --jobs {n} or fewer)")
        bounds = [(i * n // jobs, (i + 1) * n // jobs) for i in range(jobs)]
    if gpus and jobs > len(gpus):
        raise ShareError(
            f"--jobs {jobs} but --gpus gives {len(gpus)} GPU(s) ({','.join(gpus)}): one run per GPU at a time; "
            f"use --jobs {len(gpus)} or fewer, or --gpus none for CPU-only runs"
        )
    return [
        Share(i, tuple(cores[lo:hi]), None if gpus is None else (gpus[i] if gpus else ""))
        for i, (lo, hi) in enumerate(bounds)
    ]
