"""reproductions/sparcl_neurips22 (issue 15): every row of every profile composes and validates, the paper
profile is the official script, one smoke row trains end to end, and paper.csv holds only the abstract's claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.board.claims import load_claims
from spfde_core.board.paper import load_paper
from spfde_core.board.spec import PROFILES, load_spec
from spfde_core.cli import load_config
from spfde_core.config import validate
from spfde_core.train.run import run_training

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "reproductions" / "sparcl_neurips22"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_row_composes_and_validates(profile: str) -> None:
    runs = load_spec(FOLDER).runs(profile, seeds=[0])
    assert len(runs) == (13 if profile == "smoke" else 17)  # no 95% column at smoke
    for run in runs:
        cfg = load_config(list(run.method_overrides))
        validate(cfg)
        assert cfg.continual.name == "split" and cfg.continual.replay in ("derpp", "er", "der"), run.row


def test_paper_profile_is_the_official_script() -> None:
    run = next(r for r in load_spec(FOLDER).runs("paper", seeds=[0]) if r.entry == "sparcl" and r.setting == "s75")
    cfg = load_config(list(run.method_overrides))
    assert (cfg.model.name, cfg.train.epochs, cfg.train.batch_size, cfg.continual.buffer_size) == (
        "resnet18_cifar",
        250,
        32,
        500,
    )
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.schedule) == (0.03, 0, 0, "constant")
    assert (cfg.continual.alpha, cfg.continual.beta, cfg.continual.mask_other_tasks) == (0.1, 0.5, True)
    assert (
        cfg.sparsity.name == "sparcl_tdm" and cfg.sparsity.target == 0.75 and list(cfg.sparsity.phase_epochs) == [5, 45]
    )
    assert (cfg.continual.ddr.remove_per_task, cfg.continual.ddr.every_epochs, cfg.continual.ddr.until_epoch) == (
        3000,
        5,
        20,
    )
    assert (cfg.continual.dgm.sparsity, cfg.continual.dgm.refresh_batches) == (0.8, 30)


@pytest.mark.smoke
def test_the_smoke_sparcl_row_trains(tmp_path) -> None:
    run = next(r for r in load_spec(FOLDER).runs("smoke", seeds=[0]) if r.entry == "sparcl" and r.setting == "s75")
    paths = [f"run.results_dir={tmp_path / 'runs'}", f"run.checkpoint_dir={tmp_path / 'ck'}"]
    cfg = load_config([*run.overrides, *paths, f"data.prepared_dir={tmp_path / 'prepared'}", "train.progress=false"])
    record = run_training(cfg)
    assert record["continual_ddr"]["removed_total"] == 5 * 30
    assert record["sparsity"]["method"] == "sparcl_tdm" and record["continual_dgm"]["refreshes"] > 0
    assert record["continual_cost"]["ratio_to_dense_replay_baseline"] < 1


def test_paper_values_are_the_abstract_claims_only() -> None:
    values = load_paper(FOLDER / "paper.csv")
    found = [v for v in values if v.status == "found"]
    assert sorted((v.metric, v.value) for v in found) == [
        ("top1_gain_up_to", 1.7),
        ("training_flops_fewer_x_up_to", 23),
    ]
    assert all("[ABS]" in v.source for v in values if v.status in ("found", "qualitative"))
    assert all(v.value is None for v in values if v.status == "not_found")


def test_claims_load_against_the_rows() -> None:
    claims = load_claims(FOLDER / "claims.yaml", load_spec(FOLDER))
    assert [c.id for c in claims] == ["a", "b"] and all(len(c.conditions) == 2 for c in claims)


def test_cpu_ddr_rows_judge_forgetting_over_windows_of_two_presentations() -> None:
    """A forgetting event (correct, then wrong) needs two presentations in a DDR window; 3,000 removed per task."""
    from spfde_core.continual.ddr import count_per_point, removal_points

    runs = [r for r in load_spec(FOLDER).runs("cpu", seeds=[0]) if r.entry in ("ddr", "sparcl")]
    assert len(runs) == 4
    for run in runs:
        ddr = load_config(list(run.method_overrides)).continual.ddr
        points = removal_points(ddr.every_epochs, ddr.until_epoch)
        assert ddr.enabled and ddr.every_epochs >= 2 and points and max(points) < 5, run.key  # 5 epochs per task
        assert count_per_point(ddr.remove_per_task, ddr.every_epochs, ddr.until_epoch) * len(points) == 3000
