"""Clean faults of `spfde train`: Ctrl-C and SIGTERM, a full disk during a checkpoint write, stale temp files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spfde_core import atomic
from spfde_core.cli import main
from spfde_core.records import read_record

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def _checkpoint(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints" / "test" / "smoke" / "seed0" / "last.pt"


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "term")])
def test_a_signal_ends_the_run_with_one_line_saying_where_it_resumes(smoke_overrides, tmp_path, sig, code, word):
    cmd = [sys.executable, "-m", "spfde_core.cli", "train", *smoke_overrides, "train.epochs=200"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # SIGINT back to its default in the child: a suite started in the background by a non-interactive
    # shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ckpt = _checkpoint(tmp_path)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ckpt.exists(), proc.communicate()[1][-2000:] if proc.poll() is not None else "no checkpoint in 120 s"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    epoch = torch.load(ckpt, weights_only=True)["next_epoch"]
    assert last.startswith(f"spfde: {word}") and f"resumes at epoch {epoch}" in last and str(ckpt) in last, last
    assert not list(ckpt.parent.glob(".*.tmp"))


def test_a_full_disk_during_a_checkpoint_write_keeps_the_last_good_one(
    smoke_overrides, tmp_path, monkeypatch, capsys
) -> None:
    real_save = torch.save
    calls = []

    def full_disk(obj, f, *args, **kwargs):  # what torch's zip writer raises when the disk fills up
        calls.append(1)
        if len(calls) == 2:
            f.write(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", *smoke_overrides, "train.epochs=3"]) == 2
    err = capsys.readouterr().err
    ckpt = _checkpoint(tmp_path)
    line = next(line for line in err.splitlines() if line.startswith("spfde: error:"))
    assert line.startswith(f"spfde: error: {ckpt}: cannot write the checkpoint (") and "resumes at epoch 1" in line
    assert "Traceback" not in err
    assert not list(ckpt.parent.glob(".*.tmp"))  # the half-written temporary file is gone
    assert torch.load(ckpt, weights_only=True)["next_epoch"] == 1  # the last good checkpoint is intact
    monkeypatch.undo()
    assert main(["train", *smoke_overrides, "train.epochs=3"]) == 0  # and the run resumes from it
    record = read_record(tmp_path / "runs" / "test" / "smoke" / "seed0")
    assert record["run"]["resumed_from_epoch"] == [1]


def test_an_os_error_names_the_file(smoke_overrides, tmp_path, monkeypatch, capsys) -> None:
    def no_space(path, obj):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "torch_save", no_space)
    assert main(["train", *smoke_overrides, "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert f"spfde: error: {_checkpoint(tmp_path)}: cannot write the checkpoint (No space left on device)" in err
    assert "starts the run from epoch 0" in err and "Traceback" not in err


def test_stale_temporary_files_are_removed_on_the_next_start(smoke_overrides, tmp_path) -> None:
    ckpt_dir = _checkpoint(tmp_path).parent
    run_dir = tmp_path / "runs" / "test" / "smoke" / "seed0"
    stale = [
        ckpt_dir / ".last.pt.k1ll3d.tmp",
        ckpt_dir / "snapshots" / ".epoch0001.pt.x.tmp",
        run_dir / ".metrics.json.y.tmp",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    keep = ckpt_dir / "notes.tmp"  # not the atomic writer's name: left alone
    keep.write_text("mine")
    assert main(["train", *smoke_overrides, "train.epochs=1"]) == 0
    assert not [p for p in stale if p.exists()] and keep.exists()
    assert (run_dir / "metrics.json").exists()
