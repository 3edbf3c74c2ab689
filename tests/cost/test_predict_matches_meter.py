"""``spfde cost`` predicts what the ``CostMeter`` measures, for every registered sparsity method.

Each method's prediction lives in its own config class (``predicted_sparsities``,
``predicted_overheads``); a method added without one, or whose cost events drift from it, fails
here. Overrides keep each short run inside what the prediction assumes: the configured per-layer
allocation (SNIP/GraSP score ``layerwise``; DSR/SNFS do not reallocate within the run), so the
comparison is exact; the overheads (RigL's and SNFS's dense gradients, the scoring passes) are
exercised, not zero.
"""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.cost.predict import predict_cost
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.train.run import run_training

# Per method: overrides that make its short run exercise its overheads within the prediction's assumptions.
WITHIN_ASSUMPTIONS = {
    "rigl": ["sparsity.update_interval_steps=2"],  # updates at steps 2 and 4 (< 0.75 x 6 steps)
    "snfs": ["sparsity.update_every_epochs=2"],  # dense gradient every step; no reallocation in 2 epochs
    "snip": ["sparsity.allocation=layerwise"],
    "grasp": ["sparsity.allocation=layerwise"],
}
EXPECTED_OVERHEAD = {"rigl": "dense_weight_grad", "snfs": "dense_weight_grad", "snip": "scoring_passes"}
EXPECTED_OVERHEAD["grasp"] = "scoring_passes"


@pytest.mark.smoke
@pytest.mark.parametrize("method", SPARSITY_METHODS.names())
def test_prediction_matches_the_meter(smoke_overrides: list[str], method: str) -> None:
    overrides = [
        *smoke_overrides,
        "train.epochs=2",
        "train.max_batches_per_epoch=3",
        "data.synthetic.num_train=256",
        "data.synthetic.num_test=64",
        "train.batch_size=16",
        f"sparsity={method}",
        *WITHIN_ASSUMPTIONS.get(method, []),
    ]
    cfg = load_config(overrides)
    measured = run_training(cfg)["cost"]
    predicted = predict_cost(cfg)
    tf, ptf = measured["training_flops"], predicted.training_flops
    assert ptf["steps"] == tf["steps"]
    assert ptf["overheads"] == tf["overheads"]
    assert ptf["total"] == tf["total"] and ptf["baseline_dense_full_data"] == tf["baseline_dense_full_data"]
    assert predicted.evaluation_flops["total"] == measured["evaluation_flops"]["total"]
    if method in EXPECTED_OVERHEAD:
        assert tf["overheads"][EXPECTED_OVERHEAD[method]] > 0


def test_snfs_prediction_charges_the_dense_gradient_of_every_step() -> None:
    """The drift issue 13 found: ``spfde cost sparsity=snfs`` left out SNFS's dense momentum gradient."""
    snfs = predict_cost(load_config(["profile=smoke", "sparsity=snfs"])).training_flops
    static = predict_cost(load_config(["profile=smoke", "sparsity=static_random"])).training_flops
    assert snfs["steps"] == static["steps"]
    assert snfs["overheads"]["dense_weight_grad"] > 0
    assert snfs["total"] == static["total"] + snfs["overheads"]["dense_weight_grad"]
