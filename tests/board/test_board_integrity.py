"""Records the leaderboard refuses (non-finite, negative costs, out of range, a run claimed twice), a row's
profile overrides, and a committed leaderboard that is never lost (temporary files, no empty replacement)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from board_fixtures import SPEC, make_repo, write_record

from spfde_core.board import BoardError, build_board
from spfde_core.board.collect import check_overrides
from spfde_core.cli import main
from spfde_core.records import RecordError, validate_record

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("results.final_top1", float("nan"), "results/final_top1"),
        ("results.final_test_loss", float("inf"), "results/final_test_loss"),
        ("cost.training_flops.ratio_to_dense", float("-inf"), "cost/training_flops/ratio_to_dense"),
        ("timing.wall_clock_s", float("nan"), "timing/wall_clock_s"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path: Path, field: str, value: float, where: str) -> None:
    repo = make_repo(tmp_path)
    path = write_record(repo / "results" / "runs", 0.7, **{field: value})
    assert "NaN" in path.read_text() or "Infinity" in path.read_text()  # what json.dumps writes
    with pytest.raises(RecordError, match=rf"seed0/metrics.json: invalid run record at '{where}'.*not a finite"):
        build_board(repo, plots=False)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("cost.training_flops.ratio_to_dense", -0.2, "cost/training_flops/ratio_to_dense"),
        ("cost.training_flops.total", -1.0e12, "cost/training_flops/total"),
        ("cost.memory.model.avg_bytes", -1, "cost/memory/model/avg_bytes"),
        ("cost.memory.measured.cpu_peak_rss_bytes", -5, "cost/memory/measured/cpu_peak_rss_bytes"),
        ("timing.train_s", -3.0, "timing/train_s"),
        ("results.final_top1", -0.01, "results/final_top1"),
        ("results.final_top1", 70.0, "results/final_top1"),  # a percentage where the schema wants [0, 1]
        ("results.best_top1", 1.2, "results/best_top1"),
        ("results.final_train_loss", -0.5, "results/final_train_loss"),
        ("run.seed", -1, "run/seed"),
    ],
)
def test_negative_costs_and_out_of_range_values_are_refused(
    tmp_path: Path, field: str, value: float, where: str
) -> None:
    repo = make_repo(tmp_path)
    write_record(repo / "results" / "runs", 0.7, **{field: value})
    with pytest.raises(RecordError, match=rf"invalid run record at '{where}'"):
        build_board(repo, plots=False)


def test_a_record_with_nan_is_never_written(tmp_path: Path) -> None:
    from spfde_core.records import write_record as write_run_record

    repo = make_repo(tmp_path)
    good = json.loads(write_record(repo / "results" / "runs", 0.7).read_text())
    good["results"]["final_test_loss"] = float("nan")
    with pytest.raises(RecordError, match="final_test_loss"):
        write_run_record(tmp_path / "out", good)
    assert not (tmp_path / "out" / "metrics.json").exists()
    validate_record(json.loads(write_record(repo / "results" / "runs", 0.7, seed=1).read_text()))  # finite: fine


def test_a_run_claimed_twice_is_refused_naming_both_files(tmp_path: Path, capsys) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    original = write_record(runs, 0.70, seed=0)
    write_record(runs, 0.71, seed=1)
    copy = runs / "backup" / "demo" / "paper-t1-set-s90" / "seed0"
    shutil.copytree(original.parent, copy)
    with pytest.raises(RecordError, match=r"demo/paper-t1-set-s90 seed 0 is claimed by 2 records") as err:
        build_board(repo, plots=False)
    assert str(original) in str(err.value) and str(copy / "metrics.json") in str(err.value)
    assert main(["board", "--repo", str(repo), "--no-plots"]) == 2
    assert "duplicate run record" in capsys.readouterr().err
    # --skip-invalid trusts neither copy: both are listed, the cell keeps the other seed alone
    result = build_board(repo, plots=False, skip_invalid=True)
    assert result.records == 1 and len(result.skipped) == 2


def test_a_rows_profile_overrides_are_part_of_its_definition(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    spec = repo / "reproductions" / "demo" / "rows.yaml"
    # smoke: the entry's profile override sets the target its setting also sets; the later one wins
    spec.write_text(
        SPEC.replace(
            "{id: set, label: SET, overrides: [sparsity=set]}",
            "{id: set, label: SET, overrides: [sparsity=set], profile_overrides: {smoke: [sparsity.target=0.8]}}",
        )
    )
    runs = repo / "results" / "runs"
    smoke = {"config.data.name": "cifar10", "data.name": "cifar10"}
    write_record(runs, 0.5, profile="smoke", **smoke, **{"config.sparsity.target": 0.8})
    assert build_board(repo, plots=False).records == 1
    write_record(runs, 0.5, seed=1, profile="smoke", **smoke, **{"config.sparsity.target": 0.9})
    with pytest.raises(RecordError, match=r"seed1/metrics.json.*'config.sparsity.target'.*sparsity.target=0.8"):
        build_board(repo, plots=False)
    record = {"config": {"freezing": {"name": "p", "target_reduction": 0.1}}}
    check_overrides(record, ("freezing.target_reduction=0.2", "freezing.target_reduction=0.1"), "r")
    with pytest.raises(RecordError):
        check_overrides(record, ("freezing.target_reduction=0.1", "freezing.target_reduction=0.2"), "r")


@pytest.mark.smoke
def test_shipped_smoke_rows_with_profile_overrides_pass_the_record_check() -> None:
    """The smoke plan's records (their composed configs) pass the board's check of the row's overrides."""
    from omegaconf import OmegaConf

    from spfde_core.board.pipeline import _compose
    from spfde_core.board.spec import load_specs

    checked = 0
    for spec in load_specs(ROOT / "reproductions").values():
        for run in spec.runs("smoke", seeds=[0]):
            table = spec.table(run.table)
            entry = next(e for e in table.entries if e.id == run.entry)
            if "smoke" not in entry.profile_overrides and "smoke" not in table.profile_overrides:
                continue
            cfg, _ = _compose(list(run.overrides))
            check_overrides({"config": OmegaConf.to_container(cfg, resolve=True)}, run.method_overrides, run.key)
            checked += 1
    assert checked >= 5


def _outputs(repo: Path) -> dict[str, bytes]:
    out = repo / "results"
    files = [out / "LEADERBOARD.md", out / "leaderboard.csv", *sorted((out / "plots").glob("*.png"))]
    return {str(f.relative_to(out)): f.read_bytes() for f in files if f.exists()}


def test_an_empty_leaderboard_never_replaces_a_non_empty_one_unless_told(tmp_path: Path, capsys) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, seed=0)
    build_board(repo)
    before = _outputs(repo)
    assert any(name.startswith("plots/") for name in before)
    shutil.rmtree(runs)
    runs.mkdir()
    assert main(["board", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "no readable run records" in err and "--allow-empty" in err and "leaderboard.csv" in err
    assert _outputs(repo) == before
    write_record(runs, 0.70, seed=0).write_text("{not json")  # none readable, skipped: the same refusal
    with pytest.raises(BoardError, match=r"no readable run records \(1 skipped\)"):
        build_board(repo, skip_invalid=True)
    assert _outputs(repo) == before
    assert main(["board", "--repo", str(repo), "--skip-invalid", "--allow-empty"]) == 0
    after = _outputs(repo)
    assert set(after) == {"LEADERBOARD.md", "leaderboard.csv"} and after["leaderboard.csv"].count(b"\n") == 1
    assert not list((repo / "results").glob(".board-staging-*"))


def test_a_failing_render_leaves_the_previous_leaderboard_in_place(tmp_path: Path, monkeypatch) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, seed=0)
    build_board(repo)
    before = _outputs(repo)
    write_record(runs, 0.72, seed=1)
    (repo / "results" / ".board-staging-killed").mkdir()  # a killed earlier run's staging folder

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("spfde_core.board.plots.curves_plot", broken)
    with pytest.raises(OSError, match="No space left"):
        build_board(repo)
    assert _outputs(repo) == before
    assert not list((repo / "results").glob(".board-staging-*"))
    monkeypatch.undo()
    build_board(repo)
    assert _outputs(repo)["leaderboard.csv"] != before["leaderboard.csv"]
