"""The FLOPs saving freezing realises matches its target within one block, measured by the cost meter."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


def _total(record: dict) -> int:
    return record["cost"]["training_flops"]["total"]


def test_realised_saving_meets_the_target_within_one_block(smoke_overrides, tmp_path) -> None:
    # Static sparsity so both runs train at the same densities; only freezing differs.
    common = [*smoke_overrides, "sparsity=static_random", "train.epochs=12", "train.max_batches_per_epoch=4"]
    target = 0.12
    frozen = run_training(
        load_config(
            [*common, "freezing=spfde_progressive", f"freezing.target_reduction={target}", "freezing.interval_epochs=2"]
        )
    )
    plain = run_training(load_config([*common, "run.row=plain"]))
    realised = 1 - _total(frozen) / _total(plain)
    flops_by_k = frozen["freezing"]["choices"]["flops_per_sample_by_k"]
    # One block's granularity: the largest share a single block frozen for the whole run would save.
    one_block = max(a - b for a, b in zip(flops_by_k, flops_by_k[1:], strict=False)) / flops_by_k[0]
    assert target <= realised + 1e-9 <= target + one_block
    assert realised == pytest.approx(frozen["freezing"]["choices"]["planned_reduction"], rel=0.02)
