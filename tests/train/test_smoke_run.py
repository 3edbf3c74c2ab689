"""End to end at the smoke profile: the record, the curve, refusal to overwrite, --force."""

from __future__ import annotations

import csv
import json

import pytest

from spfde_core.cli import main
from spfde_core.records import read_record

pytestmark = pytest.mark.smoke


def test_smoke_run_writes_a_valid_record_and_curve(smoke_overrides, tmp_path, capsys) -> None:
    assert main(["train", *smoke_overrides, "train.epochs=3"]) == 0
    run_dir = tmp_path / "runs" / "test" / "smoke" / "seed0"
    record = read_record(run_dir)  # validates against the schema
    assert record["run"] == {
        **record["run"],
        "reproduction": "test",
        "row": "smoke",
        "seed": 0,
        "profile": "smoke",
    }
    assert record["results"]["epochs"] == 3
    assert record["results"]["best_top1"] >= record["results"]["final_top1"]
    # The synthetic classes are learnable: a working trainer beats chance (10%) within 3 epochs.
    assert record["results"]["best_top1"] > 0.3
    assert record["data"]["name"] == "synthetic" and len(record["data"]["content_sha256"]) == 64
    assert record["provenance"]["versions"]["torch"]
    assert record["timing"]["train_images_per_s"] > 0
    # How loaded the machine was (issue 18): every epoch measured, the summary adds up the curve's columns.
    assert record["timing"]["load_epochs"] == 3
    assert record["non_default"]["profile"] == "smoke"
    with open(run_dir / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert record["timing"]["cpu_s"] == pytest.approx(sum(float(r["cpu_s"]) for r in rows))
    assert record["timing"]["cpu_s"] > 0 and record["timing"]["cpu_per_wall"] > 0
    assert record["timing"]["load_1m_max"] == max(float(r["load_1m"]) for r in rows)
    assert float(rows[-1]["test_acc"]) == record["results"]["final_top1"]
    # The checkpoint lives outside results/.
    assert (tmp_path / "checkpoints" / "test" / "smoke" / "seed0" / "last.pt").exists()
    assert not list(run_dir.glob("*.pt"))


def test_rerunning_a_finished_run_refuses_and_force_replaces(smoke_overrides, tmp_path, capsys) -> None:
    args = ["train", *smoke_overrides, "train.epochs=1"]
    assert main(args) == 0
    record_path = tmp_path / "runs" / "test" / "smoke" / "seed0" / "metrics.json"
    first = json.loads(record_path.read_text())

    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(record_path) in err and "--force" in err
    assert json.loads(record_path.read_text()) == first  # untouched

    assert main([*args, "--force"]) == 0
    second = json.loads(record_path.read_text())
    assert second["run"]["started_at"] >= first["run"]["started_at"]
    assert second["run"]["resumed_from_epoch"] == []  # started over, not resumed


def test_batch_larger_than_dataset_fails_before_training(smoke_overrides, capsys) -> None:
    assert main(["train", *smoke_overrides, "train.batch_size=4096"]) == 2
    assert "train.batch_size" in capsys.readouterr().err


def test_missing_prepared_dataset_says_how_to_prepare_it(tmp_path, capsys) -> None:
    args = ["train", "data=cifar10", f"data.prepared_dir={tmp_path}", f"run.results_dir={tmp_path / 'r'}"]
    assert main(args) == 2
    assert "spfde data prepare cifar10" in capsys.readouterr().err
