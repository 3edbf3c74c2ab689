"""`torchrun --nproc_per_node=2 -m spfde_core.cli train ...` end to end (gloo, CPU): one record, by rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_helpers import free_port

pytestmark = pytest.mark.smoke
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this python")
def test_torchrun_two_processes_train_and_write_one_record(tmp_path) -> None:
    cmd = [
        str(TORCHRUN),
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "spfde_core.cli",
        "train",
        "profile=smoke",
        f"data.prepared_dir={tmp_path / 'prepared'}",
        f"run.results_dir={tmp_path / 'runs'}",
        f"run.checkpoint_dir={tmp_path / 'checkpoints'}",
        "run.reproduction=test",
        "run.row=smoke",
        "train.progress=false",
        "data.synthetic.num_train=128",
        "data.synthetic.num_test=32",
        "train.epochs=1",
        "train.max_batches_per_epoch=2",
    ]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / "test" / "smoke" / "seed0" / "metrics.json").read_text())
    assert record["distributed"]["world_size"] == 2 and record["distributed"]["backend"] == "gloo"
    assert record["cost"]["samples"]["presented"] == 2 * 32  # 2 global batches of 32, counted once
    assert (tmp_path / "checkpoints" / "test" / "smoke" / "seed0" / "last.pt").exists()
    assert done.stderr.count("final top-1") == 1  # rank 0 alone logs the result
