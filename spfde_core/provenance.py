"""Where and with what a run was produced: git state, library versions, device and CPU model."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from spfde_core import hardware


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the working tree, or nulls outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Untracked files (e.g. new run records) do not make the code dirty.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_device(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": device.type,
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        # ISA class, capability and flags as this process may use them (benchmarks are keyed by isa_class)
        "isa": hardware.cpu_isa().as_dict(),
    }
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = info["cpu_model"]
    return info


def collect(device: torch.device) -> dict[str, Any]:
    """The provenance block of a run record (no host names or user paths)."""
    from spfde_core import __version__

    return {
        "git": git_state(Path(__file__).resolve().parent),
        "spfde_version": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "versions": {name: _version(name) for name in ("torch", "torchvision", "numpy", "hydra-core")},
        "device": describe_device(device),
    }
