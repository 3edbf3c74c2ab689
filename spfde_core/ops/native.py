"""Build and load the package's C++ kernels (``spfde_core/ops/csrc/*.cpp``) as one shared library.

The kernels take raw pointers and sizes only (no PyTorch headers), so a build takes a few seconds
with the system ``g++``; they are called through :mod:`ctypes`. The library is built on first use
(or ahead of time with ``spfde ops build``) into a cache folder keyed by the sources' and flags'
hash, and written atomically, so concurrent first uses and stale builds are harmless. OpenMP comes
from ``libgomp.so.1``, the same runtime PyTorch has already loaded, so the two share one thread pool.

Anything missing (no compiler, a CPU without AVX-512) makes :func:`load` raise
:class:`NativeUnavailable` with the reason; callers fall back to the PyTorch path and report why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CSRC = Path(__file__).with_name("csrc")
# AVX-512 F/BW/VL/BF16 + FMA: every kernel here is written for them (checked at load, see cpu_flags()).
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl"]
FLAGS += ["-mavx512bf16", "-mfma", "-fno-math-errno"]
REQUIRED_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "fma")


class NativeUnavailable(RuntimeError):
    """The native kernels cannot be used here; the message says why."""


def cache_dir() -> Path:
    """``$SPFDE_OPS_CACHE`` or ``$XDG_CACHE_HOME/spfde-bench/ops`` (default ``~/.cache/...``)."""
    if os.environ.get("SPFDE_OPS_CACHE"):
        return Path(os.environ["SPFDE_OPS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spfde-bench" / "ops"


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def sources() -> list[Path]:
    return sorted(CSRC.glob("*.cpp"))


def library_path() -> Path:
    """Where the library for the current sources and flags lives (built or not)."""
    digest = hashlib.sha256()
    compiler = os.environ.get("CXX", "g++")
    for part in [compiler, *FLAGS]:
        digest.update(part.encode() + b"\0")
    for src in sources():
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return cache_dir() / digest.hexdigest()[:16] / "libspfde_ops.so"


def build(verbose: bool = False) -> Path:
    """Compile the sources into :func:`library_path` unless it exists; returns the path."""
    target = library_path()
    if target.exists():
        return target
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise NativeUnavailable(f"no C++ compiler: {compiler!r} is not on PATH (set CXX to one)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    cmd = [compiler, *FLAGS, *map(str, sources()), "-o", tmp]
    if verbose:
        print(" ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(tmp)
        raise NativeUnavailable(f"building the native kernels failed ({' '.join(cmd)}):\n{done.stderr[-4000:]}")
    os.replace(tmp, target)  # atomic: a concurrent build of the same sources writes the same file
    return target


@functools.cache
def load() -> ctypes.CDLL:
    """The loaded library (built if needed). Raises NativeUnavailable with the reason."""
    if os.environ.get("SPFDE_DISABLE_NATIVE"):
        raise NativeUnavailable("disabled by SPFDE_DISABLE_NATIVE")
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in cpu_flags()]
    if missing:
        raise NativeUnavailable(f"this CPU lacks {', '.join(missing)} (the native kernels need AVX-512 with BF16)")
    import torch  # noqa: F401  (loads PyTorch's libgomp first, so the library links to the same runtime)

    return ctypes.CDLL(str(build()))


def unavailable_reason() -> str | None:
    """None when the native kernels load; else why not."""
    try:
        load()
    except NativeUnavailable as error:
        return str(error)
    return None
