"""reproductions/freeze_cache_2025 (issue 16): every row of every profile composes, its freezing plan is
reachable and its cache fits its budget (``spfde cost``, no training), and paper.csv holds no number."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.board.paper import load_paper
from spfde_core.board.spec import PROFILES, load_spec
from spfde_core.cli import load_config
from spfde_core.cost.predict import predict_cost

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "reproductions" / "freeze_cache_2025"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_row_is_predicted_within_its_budget(profile: str) -> None:
    runs = load_spec(FOLDER).runs(profile, seeds=[0])
    assert len(runs) == 8
    by_entry = {}
    for run in runs:
        report = predict_cost(load_config(list(run.method_overrides)))  # a refused plan or budget raises
        by_entry[run.entry] = report
        cached = run.entry.startswith("cache_")
        assert (report.feature_cache is not None) == cached, run.row
        if cached:
            assert report.feature_cache["builds"] and not report.feature_cache["fallbacks"], run.row
    frozen = by_entry["recompute"].config["frozen_blocks_per_epoch"]
    assert max(frozen) >= 1
    assert all(r.config["frozen_blocks_per_epoch"] == frozen for e, r in by_entry.items() if e != "dense")
    nbytes = {e: r.feature_cache["max_bytes"] for e, r in by_entry.items() if r.feature_cache}
    assert nbytes["cache_similarity_int8"] < nbytes["cache_similarity_fp16"] < nbytes["cache_similarity"]
    assert nbytes["cache_none"] < nbytes["cache_similarity"]


def test_paper_values_are_the_abstract_claims_only() -> None:
    values = load_paper(FOLDER / "paper.csv")
    assert values and all(v.value is None and v.value_high is None for v in values)
    assert {v.status for v in values} == {"qualitative", "not_found"}
    assert all("[ABS]" in v.source for v in values if v.status == "qualitative")
