"""`spfde train --multirun`: Hydra's basic sweep, one run after another, each with its own record."""

from __future__ import annotations

import json

import pytest

from spfde_core.cli import main, sweep_jobs

pytestmark = pytest.mark.smoke


def test_sweep_jobs_expand_like_hydras_basic_sweeper() -> None:
    assert sweep_jobs(["profile=smoke", "run.seed=0,1", "optim.lr=0.1,0.05"]) == [
        ["profile=smoke", "run.seed=0", "optim.lr=0.1"],
        ["profile=smoke", "run.seed=0", "optim.lr=0.05"],
        ["profile=smoke", "run.seed=1", "optim.lr=0.1"],
        ["profile=smoke", "run.seed=1", "optim.lr=0.05"],
    ]
    assert sweep_jobs(["run.seed=range(0,3)"]) == [["run.seed=0"], ["run.seed=1"], ["run.seed=2"]]


def test_multirun_trains_each_seed_into_its_own_record(smoke_overrides, tmp_path, capsys) -> None:
    args = ["train", "--multirun", *smoke_overrides, "train.epochs=1", "run.seed=0,1"]
    assert main(args) == 0
    records = [tmp_path / "runs" / "test" / "smoke" / f"seed{k}" / "metrics.json" for k in (0, 1)]
    seeds = [json.loads(r.read_text())["run"]["seed"] for r in records]
    assert seeds == [0, 1]
    err = capsys.readouterr().err
    assert "[multirun 1/2]" in err and "[multirun 2/2]" in err
    # Rerunning the sweep skips what is recorded (an interrupted sweep is finished the same way).
    assert main(args) == 0
    assert err.count("skipped") == 0 and capsys.readouterr().err.count("skipped") == 2


def test_multirun_refuses_jobs_writing_one_record_before_any_compute(smoke_overrides, tmp_path, capsys) -> None:
    assert main(["train", "-m", *smoke_overrides, "optim.lr=0.1,0.05"]) == 2  # run.row=smoke fixed: one folder
    assert "write the same record" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main(["train", *smoke_overrides, "run.seed=0,1"]) == 2  # without --multirun Hydra says to add it
    assert "--multirun" in capsys.readouterr().err
