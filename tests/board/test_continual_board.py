"""The leaderboard shows continual runs' average forgetting, and only in tables that hold continual runs."""

from __future__ import annotations

from pathlib import Path

from board_fixtures import make_repo, write_record

from spfde_core.board import build_board


def test_forgetting_column_only_for_continual_records(tmp_path: Path) -> None:
    plain = make_repo(tmp_path / "plain")
    write_record(plain / "results" / "runs", 0.70)
    build_board(plain, plots=False)
    assert "forgetting" not in (plain / "results" / "LEADERBOARD.md").read_text()

    cl = make_repo(tmp_path / "cl")
    for seed, forgetting in ((0, 0.20), (1, 0.30)):
        write_record(cl / "results" / "runs", 0.70, seed=seed, continual={"final_forgetting": forgetting})
    build_board(cl, plots=False)
    md = (cl / "results" / "LEADERBOARD.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| entry |"))
    row = next(line for line in md.splitlines() if line.startswith("| SET |"))
    column = header.split(" | ").index("forgetting %")
    assert row.split(" | ")[column] == "25.00"  # mean over the two seeds, in %
