"""Run a command pinned to a set of cores: ``python -m spfde_core.pin 0-3 -- CMD ...``.

`spfde board run` starts each run through this wrapper (no ``taskset`` needed, and no ``preexec_fn``,
which is unsafe in the runner's threads): it sets its own affinity, prints what it now sees, then
replaces itself with the command (``exec``), so the run is the same process and inherits the mask
and every thread it starts stays on those cores. Imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def format_cpus(cpus: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (the taskset / cpuset list syntax)."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_cpus(text: str) -> tuple[int, ...]:
    """``0-2,5`` -> ``(0, 1, 2, 5)``; raises ValueError on anything else."""
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        first, last = int(lo), int(hi) if hi else int(lo)
        if first < 0 or last < first:
            raise ValueError(f"bad cpu range {part!r}")
        cpus.extend(range(first, last + 1))
    return tuple(sorted(set(cpus)))


def main(argv: list[str] | None = None) -> int:
    """Pin, report, exec; returns 2 (with a message) on a malformed call or a refused mask."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m spfde_core.pin CPUS -- COMMAND [ARGS...]   (CPUS like 0-3,8)", file=sys.stderr)
        return 2
    try:
        cpus = parse_cpus(args[0])
    except ValueError as err:
        print(f"spfde_core.pin: CPUS: expected a list like 0-3,8; {err}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as err:
            print(f"spfde_core.pin: cannot pin to cpus {args[0]}: {err}", file=sys.stderr)
            return 2
        seen = format_cpus(sorted(os.sched_getaffinity(0)))
    else:  # macOS and others: no affinity API; the thread count still limits the share
        seen = "unpinned (no sched_setaffinity on this system)"
    print(
        f"pinned: pid {os.getpid()} affinity {seen} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}",
        flush=True,
    )
    os.execvp(args[2], args[2:])
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
