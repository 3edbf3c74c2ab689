"""``spfde cost`` predicts what the meter measures with prefix freezing and feature-map caching.

The freezing plan comes from the method itself (``freezing/prefix.py: predicted_frozen_blocks``),
the cache's builds, skipped forwards and bytes from its own file (``freezing/feature_cache.py:
predict_cache``); each case trains a short smoke run and compares FLOPs (exactly), the memory
model, the frozen prefix per epoch and the cache's builds, bytes and budget fallbacks.
"""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.config import ConfigError
from spfde_core.cost.predict import format_cost_table, predict_cost
from spfde_core.train.run import run_training

PROGRESSIVE = ["freezing=spfde_progressive", "freezing.interval_epochs=1", "freezing.target_reduction=0.05"]
CASES = {
    "recompute": PROGRESSIVE,
    "cache_fp32": [*PROGRESSIVE, "feature_cache.store=memory"],
    "similarity_progressive": [
        *PROGRESSIVE,
        "feature_cache.store=disk",
        "feature_cache.augment=similarity",
        "feature_cache.compression=progressive",
        "feature_cache.int8_from=0.15",  # fp16 at k = 1, int8 at k = 2 of 11 blocks
    ],
    "linear_naive_int8": [
        "freezing=linear",
        "freezing.start_fraction=0.25",
        "feature_cache.store=memory",
        "feature_cache.augment=naive",
        "feature_cache.compression=int8",
    ],
    # sparse: the frozen prefix's masks stop changing; RigL's dense gradients skip frozen layers
    "rigl_cache": [*PROGRESSIVE, "sparsity=rigl", "sparsity.update_interval_steps=2", "feature_cache.store=memory"],
    "mest_ems_cache": [*PROGRESSIVE, "sparsity=mest_ems", "sparsity.update_every_epochs=1", "feature_cache.store=disk"],
    "over_budget_recompute": [
        *PROGRESSIVE,
        "feature_cache.store=memory",
        "feature_cache.budget_bytes=1000",
        "feature_cache.over_budget=recompute",
    ],
}


def _config(smoke_overrides: list[str], case: str):
    return load_config(
        [
            *smoke_overrides,
            "train.epochs=4",
            "train.max_batches_per_epoch=2",
            "data.synthetic.num_train=256",
            "data.synthetic.num_test=64",
            "train.batch_size=16",
            "train.precision=fp32",
            f"run.row={case}",
            *CASES[case],
        ]
    )


@pytest.mark.smoke
@pytest.mark.parametrize("case", list(CASES))
def test_prediction_matches_the_meter_with_freezing_and_feature_cache(smoke_overrides: list[str], case: str) -> None:
    cfg = _config(smoke_overrides, case)
    predicted = predict_cost(cfg)
    record = run_training(cfg)
    tf, ptf = record["cost"]["training_flops"], predicted.training_flops
    for key in ("steps", "overheads", "savings", "total", "baseline_dense_full_data"):
        assert ptf[key] == tf[key], key
    assert predicted.evaluation_flops["total"] == record["cost"]["evaluation_flops"]["total"]
    mem, pmem = record["cost"]["memory"]["model"], predicted.memory
    assert (pmem["min_bytes"], pmem["max_bytes"]) == (mem["min_bytes"], mem["max_bytes"])
    assert pmem["avg_bytes"] == pytest.approx(mem["avg_bytes"], rel=1e-12)
    frozen = record["freezing"]["frozen_blocks_per_epoch"]
    assert predicted.config["frozen_blocks_per_epoch"] == frozen and max(frozen) >= 1
    assert ptf["savings"]["freezing"] > 0
    if "feature_cache.store=memory" not in CASES[case] and "feature_cache.store=disk" not in CASES[case]:
        assert predicted.feature_cache is None and "feature_cache_build" not in ptf["overheads"]
        return
    fc, pfc = record["feature_cache"], predicted.feature_cache
    keys = ("epoch", "frozen_blocks", "storage", "channels_cached_once", "channels_cached_per_view", "bytes")
    assert [{k: b[k] for k in keys} for b in pfc["builds"]] == [{k: b[k] for k in keys} for b in fc["builds"]]
    assert [b["probe_samples"] for b in pfc["builds"]] == [b["probe_samples"] for b in fc["builds"]]
    assert pfc["max_bytes"] == fc["max_bytes"]
    assert [(f["epoch"], f["frozen_blocks"], f["bytes_needed"]) for f in pfc["fallbacks"]] == [
        (f["epoch"], f["frozen_blocks"], f["bytes_needed"]) for f in fc["fallbacks"]
    ]
    if case == "over_budget_recompute":
        assert not pfc["builds"] and pfc["fallbacks"] and "feature_cache_build" not in ptf["overheads"]
    else:
        assert pfc["builds"] and ptf["overheads"]["feature_cache_build"] > 0
        assert "feature cache" in format_cost_table(predicted)
    if case == "similarity_progressive":
        assert [b["storage"] for b in pfc["builds"]] == ["fp16", "int8"]
        assert all(b["probe_samples"] == 64 for b in pfc["builds"])


def test_prediction_refuses_an_over_budget_plan_like_the_run() -> None:
    cfg = load_config(["profile=smoke", "train.epochs=4", *PROGRESSIVE, "feature_cache.store=memory"])
    assert predict_cost(cfg).feature_cache["max_bytes"] > 1000
    cfg.feature_cache.budget_bytes = 1000
    with pytest.raises(ConfigError, match="feature_cache.budget_bytes: the cache of the first 1 blocks"):
        predict_cost(cfg)


def test_online_freezing_is_said_to_be_unmodelled() -> None:
    report = predict_cost(load_config(["profile=smoke", "freezing=autofreeze", "feature_cache.store=memory"]))
    assert report.config["frozen_blocks_per_epoch"] == [0, 0]
    assert any("autofreeze decides online" in a for a in report.assumptions)
    assert any("feature cache: not predicted" in a for a in report.assumptions)
