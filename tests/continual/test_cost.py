"""The continual cost block: replay passes charged, dense DER++ is its own baseline, DGM's skippable share."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
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
