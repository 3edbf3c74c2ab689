"""The committed plan retrains nothing: `spfde board plan` holds the runs with a record unless `--all`, and
every command about to start missing runs says how many, the estimated time and how to rebuild only the
leaderboard (issue 17, deliverable 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from spfde_core.board.pipeline import PlanError, check_plan, plan, read_params, record_file, write_plan
from spfde_core.board.runner import run_planned
from spfde_core.board.spec import load_specs
from spfde_core.cli import main
from spfde_core.provenance import cpu_model

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["spfde_neurips22/cpu-t2-dense-ref", "spfde_neurips22/cpu-t2-mest-s90"]  # 2 rows x 3 seeds


def _record(
    repo: Path, key: str, wall_clock_s: float = 1200.0, device: str | None = None, epochs: int | None = None
) -> None:
    """A stand-in record (only what the plan and the estimate read) at the path of the spec run ``key``."""
    run = next(r for s in load_specs(repo / "reproductions").values() for r in s.runs("cpu") if r.key == key)
    path = record_file(repo, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "run": {"profile": "cpu"},
        "timing": {"wall_clock_s": wall_clock_s},
        "provenance": {"device": {"name": device or cpu_model()}},
    }
    if epochs is not None:
        record["config"] = {"train": {"epochs": epochs}}
    path.write_text(json.dumps(record))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "reproductions", tmp_path / "reproductions")
    return tmp_path


def test_plan_holds_only_recorded_runs_unless_all(repo: Path) -> None:
    with pytest.raises(PlanError, match=r"has a record yet; `spfde board plan --all"):
        plan(repo, "cpu", only=ROWS)
    _record(repo, "spfde_neurips22-cpu-t2-mest-s90-seed1")
    recorded = plan(repo, "cpu", only=ROWS)
    assert list(recorded["runs"]) == ["spfde_neurips22-cpu-t2-mest-s90-seed1"]
    assert recorded["plan"]["runs"] == "recorded"
    everything = plan(repo, "cpu", only=ROWS, include_missing=True)
    assert len(everything["runs"]) == 6 and everything["plan"]["runs"] == "all"


def test_check_asks_for_a_new_plan_when_records_land_and_names_the_command(repo: Path) -> None:
    _record(repo, "spfde_neurips22-cpu-t2-dense-ref-seed0")
    write_plan(repo, "cpu", only=ROWS)
    check_plan(repo)
    _record(repo, "spfde_neurips22-cpu-t2-dense-ref-seed1")  # a campaign adds a record
    with pytest.raises(PlanError, match=r"stale.*`spfde board plan --profile cpu --only '[^`]*-ref'.*`"):
        check_plan(repo)
    write_plan(repo, "cpu", only=ROWS)  # re-plan "the runs with records": both are planned, nothing missing
    check_plan(repo)
    assert len(read_params(repo)["runs"]) == 2
    write_plan(repo, "cpu", only=ROWS, include_missing=True)
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("seed2", "seed7", 1))
    with pytest.raises(PlanError, match=r"`spfde board plan --profile cpu --all --only"):
        check_plan(repo)


def test_check_and_board_run_say_what_they_will_train_and_how_long(repo: Path, capsys) -> None:
    _record(repo, "spfde_neurips22-cpu-t2-dense-ref-seed0", wall_clock_s=1000.0)
    _record(repo, "spfde_neurips22-cpu-t2-mest-s90-seed0", wall_clock_s=1400.0)
    _record(repo, "spfde_neurips22-cpu-t2-mest-s90-seed1", wall_clock_s=9999.0, device="another CPU")
    assert (
        main(
            ["board", "--repo", str(repo), "plan", "--profile", "cpu", "--all", *sum((["--only", r] for r in ROWS), [])]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "6 runs (3 with a record)" in out
    # 3 missing runs x mean 20 min of the 2 records measured on this CPU (the other CPU's is not used)
    assert "about to train 3 planned run(s) without a record" in out and "about 1.0 h one at a time" in out
    assert f"20 min per run of 2 cpu-profile record(s) on this machine's CPU ({cpu_model()})" in out
    assert "`dvc repro --single-item leaderboard` or `spfde board`" in out
    assert "not yet in dvc.lock" in out and "train@spfde_neurips22-cpu-t2-dense-ref-seed0" in out

    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0  # the prepare stage's guard
    out = capsys.readouterr().out
    assert "dvc repro is about to train 3 planned run(s)" in out and "about 1.0 h" in out

    assert run_planned(repo, dry_run=True) == []
    out = capsys.readouterr().out
    assert "spfde board run is about to train 3 planned run(s)" in out and "dvc repro --single-item leaderboard" in out


def test_estimate_without_records_of_this_machine_says_where_they_ran(repo: Path, capsys) -> None:
    _record(repo, "spfde_neurips22-cpu-t2-dense-ref-seed0", wall_clock_s=3600.0, device="a faster CPU")
    write_plan(repo, "cpu", only=ROWS, include_missing=True)
    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0
    out = capsys.readouterr().out
    assert "about 5.0 h one at a time" in out and "1 cpu-profile record(s) on a faster CPU, not this machine" in out


def test_estimate_scales_with_the_planned_epochs(repo: Path, capsys) -> None:
    """The budget rows (train.epochs=60) take about twice the 30-epoch records' time each (issue 18)."""
    _record(repo, "spfde_neurips22-cpu-t2-mest-s90-seed0", wall_clock_s=1800.0, epochs=30)
    budget = ["spfde_neurips22/cpu-budget-mest-s90", "spfde_neurips22/cpu-budget-spfde_20_20-s90"]
    write_plan(repo, "cpu", only=budget, include_missing=True)  # 6 runs of 60 epochs, none recorded
    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0
    out = capsys.readouterr().out
    # 6 runs x 30 min x 60/30 = 6.0 h (unscaled it would say 3.0 h)
    assert "about 6.0 h one at a time" in out and "scaled by each run's train.epochs against their 30" in out
    write_plan(repo, "cpu", only=[ROWS[1]], include_missing=True)  # profile-default epochs: not scaled
    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0
    out = capsys.readouterr().out
    assert "about 1.0 h one at a time" in out and "scaled" not in out


def test_estimate_prefers_records_of_the_planned_reproduction(repo: Path, capsys) -> None:
    """A SparCL run costs differently from a SpFDE one: its own reproduction's records set the estimate."""
    _record(repo, "spfde_neurips22-cpu-t2-mest-s90-seed0", wall_clock_s=3600.0)
    write_plan(repo, "cpu", only=["spfde_neurips22/cpu-t2-mest-s90"], include_missing=True)
    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0
    assert "about 2.0 h one at a time" in capsys.readouterr().out  # 2 missing x 60 min
    _record(repo, "sparcl_neurips22-cpu-main-sparcl-s75-seed0", wall_clock_s=1200.0)
    write_plan(repo, "cpu", only=["sparcl_neurips22/cpu-main-sparcl-s75"], include_missing=True)
    assert main(["board", "--repo", str(repo), "plan", "--check"]) == 0
    out = capsys.readouterr().out
    assert "about 40 min one at a time" in out and "20 min per run of 1 cpu-profile record(s)" in out


def test_the_committed_plan_retrains_nothing() -> None:
    """params.yaml holds only runs whose records are committed, each recorded in dvc.lock (a fresh clone's
    `dvc repro` prepares the data, same hash, and trains nothing); a new plan reruns the prepare guard."""
    params = read_params(ROOT)
    assert params["plan"]["runs"] == "recorded"
    check_plan(ROOT)  # every record of the plan's rows is planned, nothing else
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    for key, item in params["runs"].items():
        assert (ROOT / item["out"] / "metrics.json").exists(), key
        assert f"train@{key}" in locked, f"{key}: `dvc commit -f train@{key}` missing"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "plan" in stages["prepare"]["do"]["params"]
    for name in params["datasets"]:
        assert locked[f"prepare@{name}"]["params"]["params.yaml"]["plan"] == params["plan"]
