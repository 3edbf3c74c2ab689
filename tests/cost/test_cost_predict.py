"""predict_cost: per-method assumptions, hand-checked overheads, the text table."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.cost.flops import dense_weight_grad_extra, sample_flops, scoring_flops
from spfde_core.cost.layers import profile_model
from spfde_core.cost.predict import format_cost_table, predict_cost
from spfde_core.models import build_model


def _smoke_profile():
    with torch.device("meta"):
        model = build_model("resnet20", 10, width=0.25)
    return profile_model(model, (3, 32, 32))


def test_dense_prediction_is_the_baseline() -> None:
    report = predict_cost(load_config(["profile=smoke", "train.epochs=3"]))
    tf = report.training_flops
    dense = sample_flops(_smoke_profile()).total
    assert tf["baseline_dense_full_data"] == 3 * 512 * dense == tf["total"]
    assert tf["ratio_to_dense"] == 1.0
    assert report.evaluation_flops["passes"] == 3 and report.evaluation_flops["samples"] == 3 * 256


def test_mest_ems_is_charged_at_its_grow_to_density_not_the_target() -> None:
    common = ["profile=smoke", "train.epochs=16", "sparsity.target=0.9"]
    ems = predict_cost(load_config([*common, "sparsity=mest_ems"]))
    em = predict_cost(load_config([*common, "sparsity=mest_em"]))
    static = predict_cost(load_config([*common, "sparsity=static_random"]))
    # EM keeps the target between mutations; EM&S grows to 0.85 / 0.875 / 0.90 per phase.
    assert em.training_flops["total"] == static.training_flops["total"]
    assert ems.training_flops["ratio_to_dense"] > static.training_flops["ratio_to_dense"]
    conv = next(r for r in ems.rows if r.name == "layer1.0.conv1")
    # Phases at 0.5625 and 0.75 of 16 epochs: 9 epochs at 0.15, 3 at 0.125, 4 at 0.10 density
    # (rounded to whole weights of the 144-weight layer: 22, 18, 14).
    assert conv.density == pytest.approx((9 * 22 + 3 * 18 + 4 * 14) / (16 * 144))
    assert conv.weights == 144


def test_rigl_prediction_charges_dense_weight_gradients_at_update_steps() -> None:
    cfg = load_config(
        [
            "profile=smoke",
            "train.epochs=10",
            "sparsity=rigl",
            "sparsity.target=0.8",
            "sparsity.update_interval_steps=10",
        ]
    )
    report = predict_cost(cfg)
    # 512 / 32 = 16 steps per epoch, 160 steps; updates at 10, 20, ..., 110 (< 0.75 x 160): 11.
    profile = _smoke_profile()
    sparse_names = [r.name for r in report.rows if r.weights and r.density < 1]
    active = {r.name: round(r.density * r.weights) for r in report.rows if r.name in sparse_names}
    per_sample = dense_weight_grad_extra(profile, active, 0, set(active))
    assert per_sample > 0
    assert report.training_flops["overheads"]["dense_weight_grad"] == 11 * 32 * per_sample


def test_grasp_and_snip_scoring_overheads() -> None:
    profile = _smoke_profile()
    grasp = predict_cost(load_config(["profile=smoke", "sparsity=grasp"]))
    split = sample_flops(profile)
    # 5 samples per class x 10 classes x 2 iterations, each 2 fwd + 2 bwd + 1 HVP (= 1 fwd + 1 bwd), dense.
    assert grasp.training_flops["overheads"]["scoring_passes"] == 100 * (3 * split.forward + 3 * split.backward)
    snip = predict_cost(load_config(["profile=smoke", "sparsity=snip"]))
    assert snip.training_flops["overheads"]["scoring_passes"] == 32 * scoring_flops(
        profile, None, {"forward": 1, "backward": 1}
    )


def test_imagenet_resnet50_prediction_and_table() -> None:
    cfg = load_config(
        ["model=resnet50", "data=imagenet", "train.epochs=2", "sparsity=static_random", "sparsity.target=0.8"]
    )
    report = predict_cost(cfg)
    assert report.samples["full_dataset"] == 1_281_167
    assert report.config["input_shape"] == [3, 224, 224]
    assert 0.2 < report.training_flops["ratio_to_dense"] < 0.3
    table = format_cost_table(report)
    for text in ("layer4.2.conv3", "stem.conv1", "(all bn)", "training FLOPs (x)", "MACs", "bitmask"):
        assert text in table
    assert report.to_dict()["rows"][0]["name"] == "stem.conv1"
