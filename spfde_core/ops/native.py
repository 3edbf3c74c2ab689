"""Build and load the package's C++ kernels (``spfde_core/ops/csrc/*.cpp``), one library per kernel and ISA.

The kernels take raw pointers and sizes only (no PyTorch headers), so a build takes a few seconds
with the system ``g++``; they are called through :mod:`ctypes`. Each kernel is built for the best
instruction-set target this process may use among those it supports (``KERNELS``): the fused
masked SGD update is plain OpenMP code and builds for ``avx512``, ``avx2`` and ``generic`` (no
x86 flags; also ARM/NEON), the sparse convolutions are x86 intrinsics behind a small vector layer
(``avx512``: 16 lanes and bf16 stores; ``avx2``: 8 lanes). A kernel whose targets this CPU cannot run
is skipped with the reason while the others still load.

The usable ISA follows PyTorch's (``spfde_core.hardware.cpu_isa``), so ``ATEN_CPU_CAPABILITY=avx2``
on an AVX-512 machine also loads the AVX2 builds; ``SPFDE_NATIVE_ISA=avx2|generic`` caps only ours.
Libraries are built on first use (or ahead of time with ``spfde ops build``) into a cache folder
keyed by the sources', target's and compiler's hash, and written atomically, so concurrent first uses
and stale builds are harmless. OpenMP comes from ``libgomp.so.1``, the runtime PyTorch has already
loaded, so the two share one thread pool.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spfde_core import hardware

CSRC = Path(__file__).with_name("csrc")
COMMON_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-fno-math-errno")


@dataclass(frozen=True)
class Target:
    """An instruction-set target: compiler flags, and the CPU flags the built code executes."""

    name: str
    flags: tuple[str, ...]
    cpu_flags: tuple[str, ...]
    rank: int
    """Higher is wider; a process capped at rank r loads targets of rank <= r."""


TARGETS = {
    "avx512": Target(
        "avx512",
        ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma", "-mf16c"),
        ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "fma"),
        2,
    ),
    "avx2": Target("avx2", ("-mavx2", "-mfma", "-mf16c"), ("avx2", "fma"), 1),
    "generic": Target("generic", (), (), 0),  # the compiler's baseline for this machine (SSE2, NEON)
}
_CLASS_RANK = {"amx": 2, "avx512": 2, "avx2": 1, "generic": 0}


@dataclass(frozen=True)
class Kernel:
    """One shared library: its sources and the targets it builds for, best first."""

    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]


KERNELS = {
    "fused_sgd": Kernel("fused_sgd", ("fused_sgd.cpp",), ("avx512", "avx2", "generic")),
    "spconv": Kernel("spconv", ("spconv.cpp",), ("avx512", "avx2")),
}


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be used here; the message says why."""


def cache_dir() -> Path:
    """``$SPFDE_OPS_CACHE`` or ``$XDG_CACHE_HOME/spfde-bench/ops`` (default ``~/.cache/...``)."""
    if os.environ.get("SPFDE_OPS_CACHE"):
        return Path(os.environ["SPFDE_OPS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spfde-bench" / "ops"


def isa_cap() -> int:
    """The widest target rank this process may run: PyTorch's ISA class, lowered by SPFDE_NATIVE_ISA."""
    rank = _CLASS_RANK[hardware.cpu_isa().isa_class]
    forced = os.environ.get("SPFDE_NATIVE_ISA")
    if forced:
        if forced not in TARGETS:
            raise NativeUnavailable(f"SPFDE_NATIVE_ISA: expected one of {', '.join(TARGETS)}, got {forced!r}")
        rank = min(rank, TARGETS[forced].rank)
    return rank


def select_target(kernel: str) -> Target:
    """The best target of ``kernel`` this process can run; NativeUnavailable with the reason otherwise."""
    spec = KERNELS[kernel]
    cap, flags = isa_cap(), hardware.cpu_flags()
    for name in spec.targets:
        target = TARGETS[name]
        if target.rank <= cap and all(flag in flags for flag in target.cpu_flags):
            return target
    needs = " or ".join(f"{t} ({', '.join(TARGETS[t].cpu_flags)})" for t in spec.targets)
    runs = hardware.cpu_isa().isa_class
    if os.environ.get("SPFDE_NATIVE_ISA"):
        runs += f" code, capped at {os.environ['SPFDE_NATIVE_ISA']} by SPFDE_NATIVE_ISA"
    raise NativeUnavailable(f"kernel {kernel!r} needs {needs}; this process runs {runs}")


def library_path(kernel: str, target: str) -> Path:
    """Where ``kernel`` built for ``target`` lives (built or not), keyed by compiler, flags and sources."""
    digest = hashlib.sha256()
    for part in [os.environ.get("CXX", "g++"), *COMMON_FLAGS, *TARGETS[target].flags]:
        digest.update(part.encode() + b"\0")
    for name in KERNELS[kernel].sources:
        digest.update(name.encode() + b"\0" + (CSRC / name).read_bytes())
    return cache_dir() / digest.hexdigest()[:16] / f"libspfde_{kernel}_{target}.so"


def build(kernel: str, target: str, verbose: bool = False) -> Path:
    """Compile ``kernel`` for ``target`` into :func:`library_path` unless it exists; returns the path."""
    path = library_path(kernel, target)
    if path.exists():
        return path
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise NativeUnavailable(f"no C++ compiler: {compiler!r} is not on PATH (set CXX to one)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".so.tmp")
    os.close(fd)
    sources = [str(CSRC / name) for name in KERNELS[kernel].sources]
    cmd = [compiler, *COMMON_FLAGS, *TARGETS[target].flags, *sources, "-o", tmp]
    if verbose:
        print(" ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(tmp)
        raise NativeUnavailable(f"building {kernel} for {target} failed ({' '.join(cmd)}):\n{done.stderr[-4000:]}")
    os.replace(tmp, path)  # atomic: a concurrent build of the same sources writes the same file
    return path


@functools.cache
def _load(kernel: str, target: str) -> ctypes.CDLL:
    import torch  # noqa: F401  (loads PyTorch's libgomp first, so the library links to the same runtime)

    return ctypes.CDLL(str(build(kernel, target)))


def load(kernel: str) -> ctypes.CDLL:
    """``kernel``'s library for the best target here (built if needed). Raises NativeUnavailable with the reason."""
    if os.environ.get("SPFDE_DISABLE_NATIVE"):
        raise NativeUnavailable("disabled by SPFDE_DISABLE_NATIVE")
    return _load(kernel, select_target(kernel).name)


def loaded_target(kernel: str) -> str | None:
    """The target :func:`load` takes for ``kernel`` here, or None when it is unavailable."""
    try:
        load(kernel)
        return select_target(kernel).name
    except NativeUnavailable:
        return None


def unavailable_reason(kernel: str) -> str | None:
    """None when ``kernel`` loads; else why not."""
    try:
        load(kernel)
    except NativeUnavailable as error:
        return str(error)
    return None


def status() -> dict[str, dict[str, str]]:
    """Per kernel: the target and library it loads, or the reason it does not (``spfde ops``)."""
    out = {}
    for kernel in KERNELS:
        reason = unavailable_reason(kernel)
        if reason is None:
            target = select_target(kernel).name
            out[kernel] = {"target": target, "library": str(library_path(kernel, target))}
        else:
            out[kernel] = {"unavailable": reason}
    return out
