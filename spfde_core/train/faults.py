"""Clean ends for `spfde train`: Ctrl-C and SIGTERM, full disks, and temporary files left by a kill.

An interrupted run ends with one line saying where it will resume (exit status 130 for SIGINT, 143 for
SIGTERM, as a shell reports a process killed by that signal); an I/O error ends with one line naming the
file. Checkpoints are written atomically (``spfde_core/atomic.py``), so the last good one is never
touched by a failed or interrupted write; a kill (SIGKILL, power loss) can still leave the writer's
``.<name>.*.tmp`` files, which the next start of the same run removes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("spfde_core.train")

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
TMP_PATTERN = ".*.tmp"
"""What ``atomic._atomic`` names its temporary files: ``.<target name>.<random>.tmp``."""
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt (so nothing catching Exception swallows it)."""


class RunInterrupted(Exception):
    """A run stopped by a signal; ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM), the message says how to resume."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunIOError(Exception):
    """A file the run had to write could not be written; the message names it and what is still intact."""


def remove_stale_tmp(*folders: Path) -> list[Path]:
    """Delete the atomic writer's temporary files left in ``folders`` (and their subfolders) by a killed run."""
    removed = []
    for folder in folders:
        if Path(folder).is_dir():
            for tmp in sorted(Path(folder).rglob(TMP_PATTERN)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(removed), removed[0].name)
    return removed


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a run resumes from with checkpoint ``path`` (its ``next_epoch``), None without a readable one."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["next_epoch"])
    except Exception:  # noqa: BLE001 - absent, truncated or foreign: there is no resume point to name
        return None


def resume_message(checkpoint: Path, epochs: int) -> str:
    epoch = checkpoint_epoch(checkpoint) if Path(checkpoint).exists() else None
    if epoch is None:
        return "no epoch was checkpointed yet; running the same command again starts the run from epoch 0"
    return (
        f"{epoch} of {epochs} epochs are checkpointed in {checkpoint}; "
        f"running the same command again resumes at epoch {epoch}"
    )


@contextlib.contextmanager
def clean_faults(checkpoint: Path, epochs: int) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into RunInterrupted and disk errors into RunIOError, for the run in the block."""

    def on_sigterm(signum, frame) -> None:  # noqa: ANN001 - the signal module's handler signature
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted (Ctrl-C): {resume_message(checkpoint, epochs)}", EXIT_SIGINT) from None
    except Terminated:
        raise RunInterrupted(f"terminated (SIGTERM): {resume_message(checkpoint, epochs)}", EXIT_SIGTERM) from None
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        name = err.filename or "a run file"
        raise RunIOError(f"{name}: {err.strerror}; {resume_message(checkpoint, epochs)}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
