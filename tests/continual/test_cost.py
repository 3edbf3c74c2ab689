"""The continual cost block: replay passes charged, dense DER++ is its own baseline, DGM's skippable share; the
per-task evaluation passes charged as evaluation FLOPs, never training (docs/continual.md, "Cost")."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.cost.predict import predict_cost
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


def test_dense_derpp_costs_exactly_its_baseline_and_replay_is_charged(cl_overrides) -> None:
    record = run_training(load_config([*cl_overrides, "continual.dgm.enabled=true"]))
    cost = record["continual_cost"]
    per_sample = cost["per_sample_dense_training_flops"]
    samples = cost["samples"]
    # the meter's steps are the current batches (dense model: every sample at the dense cost)
    assert cost["current_batch_flops"] == record["cost"]["training_flops"]["steps"]["total"]
    assert samples["current"] == 5 * 3 * 16 and cost["current_batch_flops"] == samples["current"] * per_sample
    # DER++: 2 buffer batches of 16 at each of the 12 steps of tasks 1-4, each a full training sample
    assert samples["replay"] == record["continual"]["buffer_samples_trained"] == 12 * 2 * 16
    assert cost["replay_flops"] == samples["replay"] * per_sample
    assert cost["ratio_to_dense_replay_baseline"] == 1.0  # no TDM, no DDR: the run is its own dense baseline
    # the meter charges the same replay passes as an overhead of the run's training FLOPs
    assert record["cost"]["training_flops"]["overheads"]["replay_passes"] == cost["replay_flops"]
    # DGM at the 80th percentile keeps ~20 % of the dense layers' gradients: ~80 % of their weight gradient
    dgm = cost["dgm"]
    assert 0 < dgm["weight_grad_flops_skippable"] < cost["training_flops"] / 3
    assert dgm["training_flops_if_skipped"] == cost["training_flops"] - dgm["weight_grad_flops_skippable"]
    # no TDM: DGM masks the layers TDM would make sparse, and the record says so (the script would mask none)
    assert record["continual_dgm"]["choices"]["layers"].startswith("the model's default sparse layers")
    assert record["continual"]["choices"]["replay_loss"].startswith("alpha x DER's MSE")


def test_per_task_evaluation_is_charged_as_evaluation_flops(cl_overrides) -> None:
    """One pass over the 100 test images at each of the 5 task ends, at the dense model's inference cost."""
    record = run_training(load_config(cl_overrides))
    cost = record["cost"]
    ev = cost["evaluation_flops"]
    per_task = ev["method_passes"]
    assert per_task["passes"] == 5 and per_task["samples"] == 5 * 100
    trainer_passes = ev["passes"] - per_task["passes"]
    assert trainer_passes >= 1 and ev["samples"] == (trainer_passes + 5) * 100
    # dense model: every evaluated sample, the trainer's or the harness's, costs the same inference forward
    per_sample = per_task["total"] // per_task["samples"]
    assert per_task["total"] == per_task["samples"] * per_sample > 0
    assert ev["total"] == ev["samples"] * per_sample
    # evaluation stays out of the training FLOPs: steps + replay, nothing else
    tf = cost["training_flops"]
    assert tf["overheads"]["total"] == tf["overheads"]["replay_passes"]
    assert tf["total"] == tf["steps"]["total"] + tf["overheads"]["replay_passes"]


def test_ddr_and_tdm_lower_the_ratio(cl_overrides) -> None:
    record = run_training(
        load_config(
            [
                *cl_overrides,
                "train.epochs=10",
                "train.max_batches_per_epoch=null",
                "continual.ddr.enabled=true",
                "continual.ddr.every_epochs=1",
                "continual.ddr.until_epoch=1",
                "continual.ddr.remove_per_task=32",
                "sparsity=sparcl_tdm",
                "sparsity.target=0.9",
            ]
        )
    )
    cost = record["continual_cost"]
    assert cost["samples"]["not_trained_ddr_or_cap"] == 5 * 32  # 64 per task epoch, 32 removed for the 2nd
    assert cost["samples"]["replay"] < cost["samples"]["baseline_replay"]  # fewer steps, fewer replay passes
    assert cost["ratio_to_dense_replay_baseline"] < 0.5
    assert cost["dgm"]["weight_grad_flops_skippable"] == 0


@pytest.mark.parametrize("method", ["dense", "sparcl_tdm"])
def test_spfde_cost_predicts_what_the_meter_charges(cl_overrides, method: str) -> None:
    """Per-task samples after DDR's removals, replay passes and TDM's per-task schedule, exactly."""
    overrides = [
        *cl_overrides,
        "train.epochs=10",  # 2 epochs per task; 64 images per task, 4 batches of 16
        "train.max_batches_per_epoch=null",
        "continual.ddr.enabled=true",
        "continual.ddr.every_epochs=1",
        "continual.ddr.until_epoch=1",
        "continual.ddr.remove_per_task=20",  # 44 left: 2 full batches at the second epoch of a task
        f"sparsity={method}",
        "sparsity.update_every_epochs=1" if method == "sparcl_tdm" else "train.eval_every_epochs=1",
        "sparsity.phase_epochs=[1,2]" if method == "sparcl_tdm" else "train.eval_every_epochs=1",
    ]
    cfg = load_config(overrides)
    measured = run_training(cfg)["cost"]
    predicted = predict_cost(cfg)
    tf, ptf = measured["training_flops"], predicted.training_flops
    assert ptf["steps"] == tf["steps"] and ptf["savings"] == tf["savings"]
    assert ptf["overheads"] == tf["overheads"] and tf["overheads"]["replay_passes"] > 0
    assert ptf["total"] == tf["total"] and ptf["baseline_dense_full_data"] == tf["baseline_dense_full_data"]
    assert predicted.samples["presented"] == measured["samples"]["presented"] == 5 * (64 + 32)
    # evaluation: the trainer's passes and the harness's 5 per-task passes (at TDM's masks of each task's end)
    assert predicted.evaluation_flops == measured["evaluation_flops"]
    assert measured["evaluation_flops"]["method_passes"]["passes"] == 5


def test_a_buffer_smaller_than_a_batch_is_its_own_baseline_too(cl_overrides) -> None:
    """Buffer batches hold min(batch, buffer) samples (mammoth's get_data), in the run and in its baseline alike."""
    record = run_training(load_config([*cl_overrides, "continual.buffer_size=8"]))
    cost = record["continual_cost"]
    assert cost["samples"]["replay"] == 12 * 2 * 8  # 12 steps with replay, two buffer batches of 8
    assert cost["samples"]["baseline_replay"] == cost["samples"]["replay"]
    assert cost["ratio_to_dense_replay_baseline"] == 1.0
