"""The leaderboard shows continual runs' task-IL accuracy and average forgetting, only in tables that hold
continual runs (docs/continual.md, "Metrics"; ``render.METRICS``)."""

from __future__ import annotations

from pathlib import Path

from board_fixtures import make_repo, write_record

from spfde_core.board import build_board


def _cells(md: str, first: str) -> tuple[list[str], list[str]]:
    """The reproduction table's header and the row whose first cell is ``first``, split into cells."""
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| entry |"))
    row = next(line for line in lines if line.startswith(f"| {first} |"))
    return header.split(" | "), row.split(" | ")


def test_forgetting_column_only_for_continual_records(tmp_path: Path) -> None:
    plain = make_repo(tmp_path / "plain")
    write_record(plain / "results" / "runs", 0.70)
    build_board(plain, plots=False)
    md = (plain / "results" / "LEADERBOARD.md").read_text()
    assert "| forgetting %" not in md and "| task-IL %" not in md  # (the legend names them, no table has them)

    cl = make_repo(tmp_path / "cl")
    for seed, forgetting in ((0, 0.20), (1, 0.30)):
        write_record(cl / "results" / "runs", 0.70, seed=seed, continual={"final_forgetting": forgetting})
    build_board(cl, plots=False)
    header, row = _cells((cl / "results" / "LEADERBOARD.md").read_text(), "SET")
    assert row[header.index("forgetting %")] == "25.00"  # mean over the two seeds, in %


def test_task_il_column_mean_and_ci_over_seeds_blank_for_a_non_continual_row(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    runs = repo / "results" / "runs"
    for seed, til in ((0, 0.90), (1, 0.92), (2, 0.94)):
        block = {"final_forgetting": 0.10, "final_til_avg_acc": til}
        write_record(runs, 0.50, seed=seed, continual=block)
    write_record(runs, 0.65, entry="rigl")  # same protocol, no continual block
    build_board(repo, plots=False)
    out = repo / "results" / "LEADERBOARD.md"
    md = out.read_text()
    header, row = _cells(md, "SET")
    # the column sits between the headline top-1 (and its seeds) and forgetting
    assert header[header.index("n") + 1 : header.index("forgetting %") + 1] == ["task-IL %", "forgetting %"]
    # mean 92 %, sample sd 2 pp, 3 seeds: half-width t(0.975, 2) x 2 / sqrt(3) = 4.3027 x 1.1547 = 4.97
    assert row[header.index("task-IL %")] == "92.00 ± 4.97"
    assert row[header.index("top-1 %")] == "50.00 ± 0.00"  # the class-IL headline, unchanged
    assert row[header.index("forgetting %")] == "10.00"
    _, plain = _cells(md, "RigL")
    assert plain[header.index("task-IL %")] == "" and plain[header.index("forgetting %")] == ""
    build_board(repo, plots=False)
    assert out.read_text() == md  # byte-deterministic


def test_task_il_of_one_seed_is_its_value_without_an_interval(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    write_record(repo / "results" / "runs", 0.5, continual={"final_forgetting": 0.0, "final_til_avg_acc": 0.875})
    build_board(repo, plots=False)
    header, row = _cells((repo / "results" / "LEADERBOARD.md").read_text(), "SET")
    assert row[header.index("task-IL %")] == "87.50"
