"""Claims (reproductions/<name>/claims.yaml) on hand-built records whose verdict is known."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from board_fixtures import make_repo, write_record
from scipy import stats

from spfde_core.board import build_board
from spfde_core.board.claims import ClaimError, convergence_gap, load_all_claims, welch_interval
from spfde_core.board.spec import load_specs
from spfde_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = """\
reproduction: demo
profiles: [paper]
claims:
  - id: acc
    statement: RigL is more accurate than SET at 90%
    source: Demo Sec. 4
    conditions:
      - {a: t1/rigl/s90, b: t1/set/s90, metric: top1, direction: greater, margin: 0}
"""


def _claims(repo: Path, text: str = CLAIMS) -> None:
    (repo / "reproductions" / "demo" / "claims.yaml").write_text(text)


def _verdicts(repo: Path) -> list[dict[str, str]]:
    build_board(repo, plots=False)
    with (repo / "results" / "claims.csv").open() as fh:
        return list(csv.DictReader(fh))


def _write(repo: Path, entry: str, top1: list[float], flops: float = 0.2, **edit) -> None:
    for seed, value in enumerate(top1):
        write_record(repo / "results" / "runs", value, seed=seed, entry=entry, flops=flops, **edit)


@pytest.mark.parametrize(
    ("rigl", "set_", "verdict"),
    [
        ([0.75, 0.76, 0.755], [0.70, 0.71, 0.705], "holds"),
        ([0.70, 0.71, 0.705], [0.75, 0.76, 0.755], "does not hold"),
        ([0.70, 0.74, 0.72], [0.71, 0.73, 0.70], "inconclusive at n = 3"),
        ([0.75], [0.70, 0.71, 0.705], "inconclusive at n = 1"),  # no interval with one seed, however large
    ],
)
def test_top1_verdicts_and_welch_interval(tmp_path: Path, rigl, set_, verdict) -> None:
    repo = make_repo(tmp_path)
    _claims(repo)
    _write(repo, "rigl", rigl)
    _write(repo, "set", set_)
    (row,) = _verdicts(repo)
    assert row["claim_verdict"] == verdict
    a, b = [100 * v for v in rigl], [100 * v for v in set_]
    assert float(row["difference"]) == pytest.approx(sum(a) / len(a) - sum(b) / len(b), abs=1e-6)
    assert row["a_n"] == str(len(a)) and row["b_n"] == str(len(b))
    if len(a) > 1:
        low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert (float(row["diff_low"]), float(row["diff_high"])) == pytest.approx((low, high), abs=1e-5)
        assert row["interval"] == "Welch"
    else:
        assert row["diff_low"] == "" and row["condition_verdict"] == "inconclusive"
    assert f"**{verdict}**" in (repo / "results" / "LEADERBOARD.md").read_text()


def test_missing_cells_are_named(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _claims(repo)
    (row,) = _verdicts(repo)  # no records at all: one row, no protocol
    assert row["claim_verdict"] == "missing: t1/rigl/s90, t1/set/s90" and row["protocol"] == "-"
    assert "no records (paper)" in (repo / "results" / "LEADERBOARD.md").read_text()
    _write(repo, "set", [0.70, 0.71])
    (row,) = _verdicts(repo)
    assert row["claim_verdict"] == "missing: t1/rigl/s90" and row["profile"] == "paper"


def test_profiles_are_never_mixed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _claims(repo, CLAIMS.replace("profiles: [paper]", "profiles: [paper, cpu]"))
    _write(repo, "rigl", [0.75, 0.76], profile="paper")
    _write(repo, "set", [0.70, 0.71], profile="cpu")
    rows = _verdicts(repo)
    assert [(r["profile"], r["claim_verdict"]) for r in rows] == [
        ("cpu", "missing: t1/rigl/s90"),
        ("paper", "missing: t1/set/s90"),
    ]


def test_flops_are_deterministic_and_requires_gives_not_comparable(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _claims(
        repo,
        CLAIMS.replace(
            "      - {a: t1/rigl/s90, b: t1/set/s90, metric: top1, direction: greater, margin: 0}\n",
            "      - {a: t1/rigl/s90, b: t1/set/s90, metric: train_flops, direction: less, margin: -25}\n",
        ),
    )
    _write(repo, "rigl", [0.75], flops=0.1)
    _write(repo, "set", [0.70], flops=0.2)
    (row,) = _verdicts(repo)
    assert row["claim_verdict"] == "holds"  # counted FLOPs: n = 1 is enough
    assert float(row["difference"]) == pytest.approx(-50.0) and row["interval"] == "seed range"
    # "equal FLOPs" as a precondition: 50% apart is not comparable, whatever the accuracy says
    _claims(
        repo,
        CLAIMS + "      - {a: t1/rigl/s90, b: t1/set/s90, metric: train_flops, direction: within, margin: 5,"
        " role: requires}\n",
    )
    rows = _verdicts(repo)
    assert {r["claim_verdict"] for r in rows} == {"not comparable"}
    assert [r["condition_verdict"] for r in rows] == ["inconclusive", "does not hold"]


def _similarity(path: Path, front: list[float], back: list[float]) -> None:
    layers = ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"]
    text = "epoch," + ",".join(layers) + "\n"
    for e, (f, b) in enumerate(zip(front, back, strict=True)):
        text += f"{e},{f},{(f + b) / 2},{b}\n"
    path.write_text(text)


def test_convergence_gap_first_epoch_that_stays_above_threshold(tmp_path: Path) -> None:
    path = tmp_path / "structural_similarity.csv"
    _similarity(path, [0.5, 0.95, 0.85, 0.95, 1.0], [0.5, 0.6, 0.7, 0.92, 1.0])
    assert convergence_gap(path, 0.9) == 3 - 3  # the front dips below 0.9 at epoch 2, so it converges at 3
    _similarity(path, [0.5, 0.95, 0.97, 0.99, 1.0], [0.5, 0.6, 0.7, 0.92, 1.0])
    assert convergence_gap(path, 0.9) == 3 - 1
    assert convergence_gap(path, 1.0) == 0  # both reach 1.0 only at the last epoch


def test_structural_similarity_claim(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _claims(
        repo,
        CLAIMS.replace(
            "b: t1/set/s90, metric: top1, direction: greater,",
            "metric: ss_convergence_gap, threshold: 0.9, direction: greater,",
        ),
    )
    (row,) = _verdicts(repo)
    assert row["claim_verdict"] == "missing: t1/rigl/s90"
    _write(repo, "rigl", [0.75, 0.76, 0.74])
    runs = sorted((repo / "results" / "runs" / "demo" / "paper-t1-rigl-s90").glob("seed*"))
    backs = [[0.5, 0.6, 0.7, 0.8, 0.85], [0.5, 0.6, 0.7, 0.8, 0.95], [0.5, 0.6, 0.7, 0.95, 1.0]]
    for run, back in zip(runs, backs, strict=True):
        _similarity(run / "structural_similarity.csv", [0.5, 0.95, 0.97, 0.99, 1.0], back)
    (row,) = _verdicts(repo)  # front converges at epoch 1, back at 5 (never), 4, 3: gaps 4, 3, 2
    assert float(row["a_mean"]) == pytest.approx(3.0) and row["interval"] == "t"
    assert row["claim_verdict"] == "holds"  # 3 +- t(0.975, 2) * 1 / sqrt(3) = [0.52, 5.48]


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _claims(repo)
    _write(repo, "rigl", [0.75, 0.76, 0.755])
    _write(repo, "set", [0.70, 0.71, 0.705])
    build_board(repo, plots=False)
    first = [(repo / "results" / n).read_bytes() for n in ("LEADERBOARD.md", "claims.csv")]
    build_board(repo, plots=False)
    assert [(repo / "results" / n).read_bytes() for n in ("LEADERBOARD.md", "claims.csv")] == first
    assert b"## Claims" in first[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("t1/rigl/s90, b", "t1/rigl/s95, b"), r"claims.yaml: claims\[0\].conditions\[0\].a: t1/rigl/s95 is not a row"),
        (("metric: top1", "metric: top5"), r"claims\[0\].conditions\[0\].metric: expected one of top1"),
        (("direction: greater", "direction: up"), r"claims\[0\].conditions\[0\].direction"),
        (("margin: 0", "margin: small"), r"claims\[0\].conditions\[0\].margin: expected a number"),
        (("    source: Demo Sec. 4\n", ""), r"claims\[0\].source: expected a non-empty string"),
        (("    statement:", "    claim:"), r"claims\[0\]: unknown key\(s\) claim"),
        (("profiles: [paper]", "profiles: [gpu]"), r"claims\[0\].profiles"),
        (("reproduction: demo", "reproduction: other"), r"claims.yaml: reproduction: expected 'demo'"),
        (("b: t1/set/s90, ", ""), r"claims\[0\].conditions\[0\].b: expected a cell"),
    ],
)
def test_bad_claims_file_names_file_and_field(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    repo = make_repo(tmp_path)
    _claims(repo, CLAIMS.replace(*edit))
    with pytest.raises(ClaimError, match=message):
        build_board(repo, plots=False)


def test_cli_reports_a_bad_claims_file(tmp_path: Path, capsys) -> None:
    repo = make_repo(tmp_path)
    _claims(repo, CLAIMS.replace("t1/set/s90", "t1/set"))
    assert main(["board", "--repo", str(repo), "--no-plots"]) == 2
    assert "claims.yaml: claims[0].conditions[0].b: expected a cell" in capsys.readouterr().err


def test_welch_interval_edge_cases() -> None:
    assert welch_interval([1.0], [1.0, 2.0]) is None
    assert welch_interval([1.0, 1.0], [0.0, 0.0]) == (1.0, 1.0)


def test_the_repository_claims_are_valid() -> None:
    claims = load_all_claims(ROOT / "reproductions", load_specs(ROOT / "reproductions"))
    ids = {c.id for c in claims if c.reproduction == "spfde_neurips22"}
    assert {"a", "b", "c_freeze", "c_sieve", "d", "e", "f"} <= ids
