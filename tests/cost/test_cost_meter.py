"""The CostMeter callback: hand-checked accounting on a fake loop, smoke runs, resume, prediction."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from cost_test_utils import TinyNet, mask_body_conv
from omegaconf import OmegaConf

from spfde_core.cli import load_config
from spfde_core.cost.events import CostEvent
from spfde_core.cost.flops import sample_flops
from spfde_core.cost.layers import profile_model
from spfde_core.cost.meter import CostMeter
from spfde_core.cost.predict import format_cost_table, predict_cost
from spfde_core.train.run import run_training

# ---- the accounting, driven by hand on the tiny net ------------------------------------------------


def _fake_state(model: TinyNet) -> SimpleNamespace:
    cfg = OmegaConf.create(
        {
            "data": {"name": "synthetic", "synthetic": {"image_size": 8}},
            "train": {"batch_size": 4, "drop_last": False, "max_batches_per_epoch": None},
        }
    )
    return SimpleNamespace(
        cfg=cfg,
        model=model,
        device=torch.device("cpu"),
        train_loader=SimpleNamespace(num_samples=16, dataset_size=16),
        test_loader=SimpleNamespace(num_samples=10),
        epoch=0,
        step=0,
        epoch_log={},
        cost_events=[],
    )


def _step(meter: CostMeter, state: SimpleNamespace, samples: int = 4, event: dict | None = None) -> None:
    meter.on_batch_start(state, SimpleNamespace(images=torch.empty(samples, 3, 8, 8)))
    if event is not None:  # a method appends it during the step (RigL: in after_backward)
        state.cost_events.append(CostEvent(**event, epoch=state.epoch, step=state.step))
    meter.after_step(state, SimpleNamespace(indices=torch.arange(samples)))
    state.step += 1


def test_meter_splits_savings_by_source_and_charges_overheads_where_they_occur() -> None:
    model = TinyNet()
    mask_body_conv(model, active=72)
    state = _fake_state(model)
    meter = CostMeter(memory_batch_size=4)
    profile = profile_model(model, (3, 8, 8))
    active = {"body.conv": 72}
    dense = sample_flops(profile).total
    sparse = sample_flops(profile, active).total
    frozen_dense = sample_flops(profile, None, 1).total
    frozen_sparse = sample_flops(profile, active, 1).total

    meter.on_train_start(state)
    # Epoch 0: full data (4 x 4 samples), density 0.25, a RigL dense-gradient step, evaluation.
    meter.on_epoch_start(state)
    for i in range(4):
        event = {"kind": "dense_weight_grad", "layers": ["body.conv"]} if i == 2 else None
        _step(meter, state, event=event)
    state.epoch_log = {"test_acc": 0.5}
    meter.on_epoch_end(state)
    log0 = dict(state.epoch_log)
    # Epoch 1: stem frozen, sieving presents 8 of 16 samples, a scoring pass of 5 samples (forward only).
    state.epoch, state.epoch_log = 1, {}
    model.num_frozen_blocks = 1
    state.cost_events.append(CostEvent("scoring_pass", epoch=1, step=state.step, samples=5, passes={"forward": 1}))
    meter.on_epoch_start(state)
    _step(meter, state)
    _step(meter, state)
    meter.on_epoch_end(state)
    meter.on_train_end(state)
    cost = meter.record(state, run_dir=None)["cost"]

    tf = cost["training_flops"]
    assert tf["baseline_dense_full_data"] == 2 * 16 * dense
    assert tf["steps"]["total"] == 16 * sparse + 8 * frozen_sparse
    assert tf["savings"] == {
        "order": ["sieving", "freezing", "sparsity"],
        "sieving": 8 * dense,
        "freezing": 8 * (dense - frozen_dense),
        "sparsity": 16 * (dense - sparse) + 8 * (frozen_dense - frozen_sparse),
    }
    savings = tf["savings"]["sieving"] + tf["savings"]["freezing"] + tf["savings"]["sparsity"]
    assert tf["baseline_dense_full_data"] - savings == tf["steps"]["total"]  # exact, integers
    # RigL's update step: the dense weight gradient of body.conv adds (288 - 72) x 64 x 2 FLOPs per sample.
    assert tf["overheads"]["dense_weight_grad"] == 4 * (36864 - 9216)
    # Scoring: 5 samples x one training-mode forward at the live density.
    assert tf["overheads"]["scoring_passes"] == 5 * sample_flops(profile, active).forward
    assert tf["total"] == tf["steps"]["total"] + tf["overheads"]["total"]
    assert tf["ratio_to_dense"] == tf["total"] / tf["baseline_dense_full_data"] < 1
    # Evaluation is listed separately: 10 test samples x inference forward, epoch 0 only.
    assert cost["evaluation_flops"] == {
        "total": 10 * sample_flops(profile, active, mode="eval").forward,
        "passes": 1,
        "samples": 10,
    }
    assert cost["samples"] == {
        "full_dataset": 16,
        "presented": 24,
        "baseline": 32,
        "skipped": 8,
        "steps": 6,
        "epochs": 2,
    }
    assert log0["train_flops"] == 16 * sparse and log0["overhead_flops"] == 4 * (36864 - 9216)
    assert log0["eval_flops"] == cost["evaluation_flops"]["total"]
    assert state.epoch_log["overhead_flops"] == 5 * sample_flops(profile, active).forward
    mem = cost["memory"]["model"]
    assert mem["min_bytes"] < mem["avg_bytes"] < mem["max_bytes"]  # freezing shrank it in epoch 1
    assert mem["at_max"]["weight_grads"] == (108 + 72 + 16 + 18) * 4
    assert cost["conv_linear_macs"]["unit"] == "MACs"


def test_meter_reads_live_masks_and_recounts_only_when_they_change() -> None:
    model = TinyNet()
    mask_body_conv(model, active=72)
    state = _fake_state(model)
    meter = CostMeter()
    meter.on_train_start(state)
    meter.on_epoch_start(state)
    _step(meter, state)
    first = meter.totals["fwd"]
    with torch.no_grad():
        model.blocks[1].conv.weight_mask.view(-1)[72:144] = True  # a mask update: density 0.5
    _step(meter, state)
    profile = profile_model(model, (3, 8, 8))
    assert meter.totals["fwd"] - first == 4 * sample_flops(profile, {"body.conv": 144}).forward
    # The per-step bookkeeping on an unchanged state is cheap (cached per mask version).
    start = time.perf_counter()
    for _ in range(200):
        _step(meter, state)
    assert (time.perf_counter() - start) / 200 < 1e-3


# ---- end to end on smoke runs ----------------------------------------------------------------------


def _smoke(smoke_overrides: list[str], *extra: str) -> list[str]:
    return [
        *smoke_overrides,
        "train.epochs=2",
        "train.max_batches_per_epoch=3",
        "data.synthetic.num_train=256",
        "data.synthetic.num_test=64",
        "train.batch_size=16",
        *extra,
    ]


@pytest.mark.smoke
@pytest.mark.parametrize("method", ["static_random", "mest_ems"])
def test_smoke_run_ratio_below_one_consistent_with_densities_and_prediction(smoke_overrides, method) -> None:
    overrides = _smoke(smoke_overrides, f"sparsity={method}", "sparsity.target=0.8")
    cfg = load_config(overrides)
    record = run_training(cfg)
    cost = record["cost"]
    tf = cost["training_flops"]
    assert 0 < tf["ratio_to_dense"] < 1
    # Masks are fixed during these 2 epochs (MEST mutates at epoch 0 only): every step ran at the
    # final densities, so the mean per-sample cost is the analytic count at those densities.
    active = {layer["name"]: layer["active"] for layer in record["sparsity"]["layers"]}
    with torch.device("meta"):
        from spfde_core.models import build_model

        model = build_model("resnet20", 10, width=0.25)
    profile = profile_model(model, (3, 32, 32))
    assert cost["per_sample_flops"]["dense_training_step"] == sample_flops(profile).total
    assert tf["steps"]["total"] == cost["samples"]["presented"] * sample_flops(profile, active).total
    assert cost["samples"]["presented"] == cost["samples"]["baseline"] == 2 * 3 * 16
    density = record["sparsity"]["sparse_layers_density"]
    if method == "mest_ems":  # EM&S runs at its grow-to density (0.3 at target 0.8), not the target
        assert density == pytest.approx(0.3, abs=1e-3)
    else:
        assert density == pytest.approx(0.2, abs=1e-3)
    savings = tf["savings"]
    assert savings["sieving"] == savings["freezing"] == 0
    assert tf["baseline_dense_full_data"] - savings["sparsity"] == tf["steps"]["total"]
    assert cost["evaluation_flops"]["passes"] == 2 and cost["evaluation_flops"]["samples"] == 128
    assert cost["memory"]["model"]["max_bytes"] < cost["memory"]["model"]["dense_bytes"]
    assert cost["memory"]["measured"]["cpu_peak_rss_bytes"] > 0
    # The prediction reproduces the meter exactly for these methods.
    report = predict_cost(cfg)
    assert report.training_flops["total"] == tf["total"]
    assert report.training_flops["ratio_to_dense"] == tf["ratio_to_dense"]
    assert report.evaluation_flops["total"] == cost["evaluation_flops"]["total"]
    assert report.memory["max_bytes"] == cost["memory"]["model"]["max_bytes"]
    assert "layer1.0.conv1" in format_cost_table(report)


class Kill(Exception):
    pass


class KillInEpoch:
    """Dies like a killed process in the middle of ``epoch`` (after the previous checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch and state.step % 3 == 1:
            raise Kill


class EmitDenseGrads:
    """Stands in for RigL: a dense weight gradient of one layer at every even step."""

    def after_backward(self, state, batch) -> None:
        if state.step % 2 == 0:
            state.cost_events.append(CostEvent("dense_weight_grad", state.epoch, state.step, layers=["layer1.0.conv1"]))


@pytest.mark.smoke
def test_resumed_totals_equal_uninterrupted(smoke_overrides, tmp_path) -> None:
    overrides = _smoke(smoke_overrides, "sparsity=static_random", "sparsity.target=0.8", "train.epochs=3")
    whole_cfg = load_config(
        [*overrides, f"run.results_dir={tmp_path / 'whole'}", f"run.checkpoint_dir={tmp_path / 'ckw'}"]
    )
    whole = run_training(whole_cfg, extra_callbacks=[EmitDenseGrads()])

    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[EmitDenseGrads(), KillInEpoch(2)])
    resumed = run_training(cfg, extra_callbacks=[EmitDenseGrads()])

    assert resumed["run"]["resumed_from_epoch"] == [2]
    assert whole["cost"]["training_flops"]["overheads"]["dense_weight_grad"] > 0

    def without_measured(cost: dict) -> dict:
        return {**cost, "memory": {**cost["memory"], "measured": None}}

    assert without_measured(resumed["cost"]) == without_measured(whole["cost"])


@pytest.mark.smoke
def test_dense_smoke_run_is_its_own_baseline(smoke_overrides) -> None:
    cfg = load_config(_smoke(smoke_overrides, "train.epochs=1"))
    cost = run_training(cfg)["cost"]
    tf = cost["training_flops"]
    assert tf["ratio_to_dense"] == 1.0 and tf["steps"]["total"] == tf["baseline_dense_full_data"]
    assert tf["savings"]["sparsity"] == 0 and tf["overheads"]["total"] == 0
    assert cost["memory"]["model"]["max_bytes"] == cost["memory"]["model"]["dense_bytes"]
    assert predict_cost(cfg).training_flops["total"] == tf["total"]
