"""Helpers of the pipeline tests: a temporary copy of the repository (git + DVC) and CLI calls in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DVC = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
SPFDE = [sys.executable, "-m", "spfde_core.cli"]


def copy_repo(dest: Path) -> Path:
    """The repository as a fresh clone would have it: tracked and unignored files, plus .dvc's config."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for name in ("config", ".gitignore"):
        if (ROOT / ".dvc" / name).exists():
            (dest / ".dvc").mkdir(exist_ok=True)
            shutil.copy2(ROOT / ".dvc" / name, dest / ".dvc" / name)
    shutil.rmtree(dest / "results" / "runs", ignore_errors=True)  # only this test's runs
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    if not (dest / ".dvc" / "config").exists():
        subprocess.run([DVC, "init", "-q"], cwd=dest, check=True)
    return dest


def env(**extra: str) -> dict[str, str]:
    """This venv first on PATH; the copy's own code (cwd) rather than PYTHONPATH's; one thread by default."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, OMP_NUM_THREADS="1", PYTHONPATH="", **extra)


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    """Run ``cmd`` in ``cwd``; assert it succeeds; its stdout + stderr."""
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr
