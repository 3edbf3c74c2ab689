"""torch.compile path (slow tier: compiling takes tens of seconds on CPU). Run: pytest -m slow."""

from __future__ import annotations

import pytest

from spfde_core.cli import load_config
from spfde_core.train.run import run_training


@pytest.mark.slow
def test_compiled_training_matches_eager_up_to_float_reordering(smoke_overrides, tmp_path) -> None:
    common = [*smoke_overrides, "train.epochs=1", "train.precision=fp32", "train.channels_last=false"]
    eager = run_training(load_config([*common, "run.row=eager"]))
    compiled = run_training(load_config([*common, "run.row=compiled", "train.compile=true"]))
    assert compiled["config_hash"] == eager["config_hash"]  # compile is a speed knob, not part of identity
    assert compiled["results"]["final_train_loss"] == pytest.approx(eager["results"]["final_train_loss"], rel=2e-2)
