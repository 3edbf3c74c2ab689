"""The leaderboard's plots: what is drawn (front = the table's rank 1, CI bars, seed bands, claims), not pixels."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from board_fixtures import make_repo, write_record
from matplotlib.container import ErrorbarContainer

from spfde_core.board import build_board

CLAIMS = """\
reproduction: demo
profiles: [paper]
claims:
  - id: cheap
    statement: RigL at 90% uses at least 10% fewer training FLOPs than SET with top-1 within 2 points
    source: Demo Sec. 4
    conditions:
      - {a: t1/rigl/s90, b: t1/set/s90, metric: train_flops, direction: less, margin: -10}
      - {a: t1/rigl/s90, b: t1/set/s90, metric: top1, direction: within, margin: 2}
"""


@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure the board closes, kept for inspection (the plots close each figure once saved)."""
    kept: list = []
    close = plt.close

    def keep(fig=None) -> None:  # noqa: ANN001
        kept.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return kept


def _board(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path)
    (repo / "reproductions" / "demo" / "claims.yaml").write_text(CLAIMS)
    runs = repo / "results" / "runs"
    for seed, (s, r) in enumerate([(0.70, 0.71), (0.69, 0.72), (0.71, 0.70)]):  # RigL dominates SET
        write_record(runs, s, seed=seed, entry="set", flops=0.5)
        write_record(runs, r, seed=seed, entry="rigl", flops=0.4)
    return repo


def test_pareto_plot_front_is_the_tables_and_bars_are_the_ci(tmp_path: Path, figures: list) -> None:
    repo = _board(tmp_path)
    result = build_board(repo)
    names = sorted(p.name for p in result.plots)
    assert [n.split("-")[0] for n in names] == ["curves", "pareto"]
    with (repo / "results" / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    pareto = next(f for f in figures if f.axes[0].get_xscale() == "log")
    ax = pareto.axes[0]
    # One set of axes for every cell of the protocol.
    assert len(pareto.axes) == 1
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(rows)
    # The front line goes through exactly the cells the table ranks 1.
    (front,) = [line for line in ax.get_lines() if line.get_label().startswith("Pareto front")]
    expected = sorted(float(r["train_flops_ratio"]) for r in rows if r["pareto_rank"] == "1")
    assert expected == [0.4] and len(rows) == 2
    assert sorted(set(front.get_xdata()[:-1])) == pytest.approx(expected)
    # 95% CI bars for n >= 2: the table's interval.
    with_ci = [r for r in rows if r["top1_ci95_low"]]
    spans = sorted(seg[1][1] - seg[0][1] for c in bars if c.has_yerr for seg in c.lines[2][0].get_segments())
    table = sorted(float(r["top1_ci95_high"]) - float(r["top1_ci95_low"]) for r in with_ci)
    assert len(with_ci) == 2 and spans == pytest.approx(table, abs=1e-3)  # the CSV rounds to 4 decimals
    # The claim is drawn and spelled out.
    texts = [t.get_text() for t in ax.texts] + [t.get_text() for t in pareto.texts]
    assert "claim cheap" in texts
    assert any("claim cheap (" in t and "claimed A - B < -10 %" in t for t in texts)


def test_curves_plot_bands_span_the_seeds(tmp_path: Path, figures: list) -> None:
    build_board(_board(tmp_path))
    curves = next(f for f in figures if f.axes[0].get_xscale() == "linear")
    (ax90,) = curves.axes
    assert ax90.get_title() == "90%"
    # Three seeds of SET and RigL at 90%: a min-max band each; cumulative FLOPs 0.5 and 0.4 x 1e12 per epoch.
    assert len(ax90.collections) == 2
    lines = {line.get_label(): line for line in ax90.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"SET (n=3)", "RigL (n=3)"}
    assert list(lines["SET (n=3)"].get_xdata()) == pytest.approx([0.5, 1.0, 1.5])
    assert list(lines["RigL (n=3)"].get_xdata()) == pytest.approx([0.4, 0.8, 1.2])
    assert lines["SET (n=3)"].get_ydata()[-1] == pytest.approx(70.0)


def test_plots_are_byte_identical_on_regeneration(tmp_path: Path) -> None:
    repo = _board(tmp_path)
    build_board(repo)
    plots = sorted((repo / "results" / "plots").glob("*.png"))
    before = {p.name: p.read_bytes() for p in plots}
    build_board(repo)
    assert {p.name: p.read_bytes() for p in sorted((repo / "results" / "plots").glob("*.png"))} == before
