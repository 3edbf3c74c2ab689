"""The leaderboard on fixture records: validation, aggregation, protocols, paper deltas, Pareto, determinism."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from board_fixtures import make_repo, write_record
from scipy import stats

from spfde_core.board import build_board
from spfde_core.board.aggregate import pareto_ranks, t_interval
from spfde_core.board.paper import PaperError, load_paper
from spfde_core.board.spec import SpecError, load_spec, load_specs
from spfde_core.cli import main
from spfde_core.records import RecordError

ROOT = Path(__file__).resolve().parents[2]


def _rows(repo: Path) -> list[dict[str, str]]:
    with (repo / "results" / "leaderboard.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_malformed_record_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    write_record(repo / "results" / "runs", 0.7, seed=1, **{"results.final_top1": 1.7})
    with pytest.raises(RecordError, match=r"seed1/metrics.json.*results/final_top1"):
        build_board(repo, plots=False)


def test_inconsistent_record_is_refused_naming_the_field(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    write_record(repo / "results" / "runs", 0.7, **{"config.sparsity.target": 0.8})  # row says 0.9
    with pytest.raises(RecordError, match=r"metrics.json.*'config.sparsity.target'.*sparsity.target=0.9"):
        build_board(repo, plots=False)
    (repo / "results" / "runs").rename(repo / "old")
    write_record(repo / "results" / "runs", 0.7, **{"data.name": "cifar10"})
    with pytest.raises(RecordError, match="'data.name'"):
        build_board(repo, plots=False)


def test_skip_invalid_lists_the_bad_records(tmp_path: Path, capsys) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, seed=0)
    bad = write_record(runs, 0.70, seed=1)
    bad.write_text("{not json")
    assert main(["board", "--repo", str(repo), "--no-plots"]) == 2
    assert "seed1/metrics.json: not valid JSON" in capsys.readouterr().err
    assert main(["board", "--repo", str(repo), "--no-plots", "--skip-invalid"]) == 0
    assert "skipped: " in capsys.readouterr().err
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    assert "Skipped records" in md and "seed1/metrics.json" in md
    assert _rows(repo)[0]["n"] == "1"


def test_cell_mean_t_interval_and_n_over_seeds(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    values = [0.70, 0.72, 0.71]
    for seed, v in enumerate(values):
        write_record(repo / "results" / "runs", v, seed=seed)
    build_board(repo, plots=False)
    (row,) = _rows(repo)
    pct = [100 * v for v in values]
    mean = sum(pct) / 3
    sem = stats.sem(pct)
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=sem)
    assert row["n"] == "3" and row["seeds"] == "0 1 2"
    assert float(row["top1_mean"]) == pytest.approx(mean, abs=1e-4)
    assert float(row["top1_ci95_low"]) == pytest.approx(low, abs=1e-4)
    assert float(row["top1_ci95_high"]) == pytest.approx(high, abs=1e-4)
    assert float(row["train_flops_ratio"]) == pytest.approx(0.2)
    assert float(row["memory_model_avg_mib"]) == pytest.approx(100.0)
    assert float(row["wall_clock_min"]) == pytest.approx(2.0)
    assert t_interval([1.0]) is None


def test_profiles_and_datasets_are_never_mixed_in_a_cell(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, seed=0)
    write_record(runs, 0.60, seed=1, **{"data.content_sha256": "b" * 64})  # same row, other dataset content
    write_record(runs, 0.50, seed=0, profile="cpu", **{"config.data.name": "cifar10", "data.name": "cifar10"})
    build_board(repo, plots=False)
    rows = _rows(repo)
    assert len(rows) == 3 and all(r["n"] == "1" for r in rows)
    assert {(r["profile"], r["data_sha256"][:1]) for r in rows} == {("paper", "a"), ("paper", "b"), ("cpu", "a")}
    assert len({r["protocol"] for r in rows}) == 3
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    assert md.count("### `") == 3  # one overall table per protocol


def test_paper_value_and_delta_only_where_a_source_exists(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    for seed, (s, r) in enumerate([(0.70, 0.72), (0.72, 0.74)]):
        write_record(runs, s, seed=seed, entry="set")
        write_record(runs, r, seed=seed, entry="rigl", flops=0.3)
    write_record(runs, 0.5, profile="cpu", **{"config.data.name": "cifar10", "data.name": "cifar10"})
    build_board(repo, plots=False)
    rows = {(r["entry"], r["profile"]): r for r in _rows(repo)}
    assert rows["set", "paper"]["paper_top1"] == "70" and float(rows["set", "paper"]["delta_top1"]) == pytest.approx(
        1.0
    )
    assert rows["set", "paper"]["paper_source"] == "Demo Table 1, read from the PDF"
    assert rows["rigl", "paper"]["paper_status"] == "not_found" and rows["rigl", "paper"]["delta_top1"] == ""
    assert rows["set", "cpu"]["delta_top1"] == ""  # a cpu-profile number is never compared with the paper
    md = (repo / "results" / "LEADERBOARD.md").read_text()
    # the found difference claim: ours = rigl - set = 2.0 points, paper 1.5, delta 0.5
    claim = next(line for line in md.splitlines() if "top1_diff vs set s90" in line)
    assert "| +1.50 pp | 2.00 | 0.50 | Demo text Sec. 4 |" in claim
    assert "not found" in md and "DeepR: not implemented" in md


def test_pareto_front_ranks_accuracy_against_flops(tmp_path: Path) -> None:
    assert pareto_ranks([(70, 0.5), (72, 0.6), (69, 0.7), (71, 0.5)]) == [2, 1, 3, 1]
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    write_record(runs, 0.70, entry="set", flops=0.5)
    write_record(runs, 0.72, entry="rigl", flops=0.6)
    build_board(repo, plots=False)
    ranks = {r["entry"]: r["pareto_rank"] for r in _rows(repo)}
    assert ranks == {"set": "1", "rigl": "1"}
    write_record(runs, 0.76, seed=1, entry="set", flops=0.5)  # set now 73 at 0.5: dominates rigl
    build_board(repo, plots=False)
    assert {r["entry"]: r["pareto_rank"] for r in _rows(repo)} == {"set": "1", "rigl": "2"}


def test_regeneration_is_byte_identical_and_plots_are_written(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    for seed in (0, 1):
        write_record(runs, 0.70 + 0.01 * seed, seed=seed, entry="set", flops=0.5)
        write_record(runs, 0.72 - 0.01 * seed, seed=seed, entry="rigl", flops=0.6)
    first = build_board(repo)
    names = sorted(p.name for p in first.plots)
    assert any(n.startswith("pareto-paper-cifar100") for n in names)
    assert any(n.startswith("curves-demo-t1-") for n in names)
    out = repo / "results"
    files = [out / "LEADERBOARD.md", out / "leaderboard.csv", *sorted((out / "plots").glob("*.png"))]
    before = {f: f.read_bytes() for f in files}
    assert all(f.stat().st_size > 1000 for f in files if f.suffix == ".png")
    build_board(repo)
    assert {f: f.read_bytes() for f in files} == before
    md = before[out / "LEADERBOARD.md"].decode()
    assert "Protocol version **1**" in md and "(runs/demo/paper-t1-set-s90/seed0/metrics.json)" in md


def test_spec_and_paper_errors_name_file_and_field(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    spec = repo / "reproductions" / "demo" / "rows.yaml"
    spec.write_text(spec.read_text().replace("runnable: false, note: not implemented", "runnable: false"))
    with pytest.raises(SpecError, match=r"rows.yaml: tables\[0\].entries\[2\].note"):
        load_spec(spec)
    paper = repo / "reproductions" / "demo" / "paper.csv"
    paper.write_text(paper.read_text().replace("%,,,not_found", "%,,,found"))
    with pytest.raises(PaperError, match=r"paper.csv:3: value"):
        load_paper(paper)


def test_shipped_specs_and_paper_values_are_well_formed() -> None:
    specs = load_specs(ROOT / "reproductions")
    assert {"spfde_neurips22", "mest_neurips21", "freeze_cache_2025", "open"} <= set(specs)
    for name, spec in specs.items():
        rows = spec.rows()
        for value in load_paper(ROOT / "reproductions" / name / "paper.csv"):
            if value.table in {t.id for t in spec.tables} and value.setting:
                table = spec.table(value.table)
                assert value.entry in {e.id for e in table.entries}, (name, value.line)
                assert value.setting in {s.id for s in table.settings}, (name, value.line)
            if value.status == "not_found":
                assert value.value is None and "not" in value.source.lower() or value.source, value
        assert rows, name
    t2 = specs["spfde_neurips22"].table("t2")
    assert not next(e for e in t2.entries if e.id == "deepr").runnable
    assert all(r.profile == "paper" for r in specs["spfde_neurips22"].runs("paper") if r.table == "t3")
    assert not [r for r in specs["spfde_neurips22"].runs("cpu") if r.table == "t3"]
    assert math.isclose(len(specs["spfde_neurips22"].seeds("paper")), 3)  # the paper's mean of 3 runs
    json.dumps([r.key for r in specs["spfde_neurips22"].runs("smoke")])
