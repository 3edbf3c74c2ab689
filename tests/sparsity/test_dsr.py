"""DSR: threshold adaptation, proportional reallocation with an exact total, schedule, smoke run."""

from __future__ import annotations

import pytest
import torch
from sparsity_test_utils import StepInvariants, hand_context

from spfde_core.cli import load_config
from spfde_core.sparsity.dsr import DSR, DSRConfig, adapt_threshold, threshold_prune
from spfde_core.train.run import run_training


def test_threshold_adaptation_follows_the_intel_rule() -> None:
    assert adapt_threshold(0.001, 200, 100, 0.1) == pytest.approx(0.0005)  # too many pruned: halve
    assert adapt_threshold(0.001, 50, 100, 0.1) == pytest.approx(0.002)  # too few: double
    assert adapt_threshold(0.001, 105, 100, 0.1) == 0.001  # within tolerance: keep
    assert adapt_threshold(0.001, 110, 100, 0.1) == 0.001  # the bounds are inclusive
    assert adapt_threshold(0.001, 111, 100, 0.1) == pytest.approx(0.0005)


def test_threshold_prune_keeps_the_largest_weight_of_an_emptied_layer() -> None:
    w = torch.tensor([0.01, -0.03, 0.02, 0.5])
    mask = torch.tensor([True, True, True, False])
    assert threshold_prune(mask, w, 0.025).tolist() == [False, True, False, False]
    assert threshold_prune(mask, w, 0.1).tolist() == [False, True, False, False]  # kept: |-0.03|


def _layer(active_values: list[float], size: int) -> torch.Tensor:
    w = torch.zeros(size)
    w[: len(active_values)] = torch.tensor(active_values)
    return w.view(size, 1, 1, 1)


def test_reallocation_is_proportional_to_survivors_and_preserves_the_total() -> None:
    # Layer a: 10 active, 6 below H = 0.1; layer b: 10 active, 2 below H. 8 pruned in total.
    weights = {
        "a": _layer([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.5, 0.6, 0.7, 0.8], 40),
        "b": _layer([0.01, 0.02, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], 40),
    }
    cfg = DSRConfig(target=0.75, update_interval_steps=[5], interval_phase_fractions=[], initial_threshold=0.1)
    cfg.prune_count = 4
    ctx = hand_context(weights, {"a": 0.75, "b": 0.75}, cfg, epochs=10)
    dsr = DSR(cfg)
    a, b = ctx.masks.layers
    for layer in (a, b):
        mask = torch.zeros(40, dtype=torch.bool)
        mask[:10] = True
        layer.mask = mask.view(40, 1, 1, 1)
    ctx.state.step = 5
    assert dsr.after_backward(ctx)
    # Survivors 4 and 8: the 8 regrown weights split 8 * 4/12 = 2.67 -> 3 and 5.33 -> 5.
    assert int(a.mask.sum()) == 4 + 3 and int(b.mask.sum()) == 8 + 5
    assert int(a.mask.sum()) + int(b.mask.sum()) == 20  # total active count preserved exactly
    assert a.target == pytest.approx(1 - 7 / 40) and b.target == pytest.approx(1 - 13 / 40)
    # Survivors kept; regrowth only at positions that were inactive before (not the just-pruned).
    assert a.mask.flatten()[6:10].all() and not a.mask.flatten()[:6].any()
    assert b.mask.flatten()[2:10].all() and not b.mask.flatten()[:2].any()
    # 8 pruned > 1.1 * 4: H halves for the next update.
    assert dsr.threshold == pytest.approx(0.05) and dsr.state_dict()["threshold"] == pytest.approx(0.05)


def test_schedule_phases_and_stop() -> None:
    dsr = DSR(DSRConfig())
    assert [dsr.interval(e, 200) for e in (0, 24, 25, 79, 80, 139, 140, 199)] == [
        100,
        100,
        200,
        200,
        400,
        400,
        800,
        800,
    ]
    assert not dsr.is_update_step(0, 0, 200)
    assert dsr.is_update_step(100, 0, 200) and not dsr.is_update_step(150, 0, 200)
    assert not dsr.is_update_step(500, 30, 200) and dsr.is_update_step(600, 30, 200)  # P = 200 there
    assert dsr.is_update_step(8000, 189, 200) and not dsr.is_update_step(8000, 190, 200)  # stop at 0.95
    with pytest.raises(ValueError, match="update_interval_steps"):
        DSR(DSRConfig(update_interval_steps=[100, 200]))
    with pytest.raises(ValueError, match="sparsity.scheme=unstructured"):
        DSR(DSRConfig(scheme="channel"))


@pytest.mark.smoke
def test_dsr_smoke_run_keeps_invariants(smoke_overrides) -> None:
    checker = StepInvariants()
    overrides = [
        "sparsity=dsr",
        "train.epochs=3",
        "train.max_batches_per_epoch=4",
        "sparsity.update_interval_steps=[2]",
        "sparsity.interval_phase_fractions=[]",
    ]
    record = run_training(load_config([*smoke_overrides, *overrides]), extra_callbacks=[checker])
    assert checker.steps == 12
    block = record["sparsity"]
    assert block["method"] == "dsr" and block["num_mask_updates"] == 5  # steps 2, 4, 6, 8, 10
    assert sum(layer["active"] for layer in block["layers"]) == sum(
        round(0.1 * layer["size"]) for layer in block["layers"]
    )
    for layer in block["layers"]:
        assert abs(layer["active"] - round((1 - layer["target_sparsity"]) * layer["size"])) <= 1
    assert block["exploration_rate"] > 0.1
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])


class Kill(Exception):
    pass


class KillInEpoch2:
    def on_batch_start(self, state, batch) -> None:
        if state.epoch == 2 and state.step == 9:
            raise Kill


@pytest.mark.smoke
def test_dsr_resume_restores_the_threshold(smoke_overrides, tmp_path) -> None:
    overrides = [
        *smoke_overrides,
        "sparsity=dsr",
        "train.epochs=3",
        "train.max_batches_per_epoch=4",
        "sparsity.update_interval_steps=[2]",
        "sparsity.interval_phase_fractions=[]",
        "sparsity.initial_threshold=0.05",
    ]
    whole = run_training(
        load_config([*overrides, f"run.results_dir={tmp_path / 'w'}", f"run.checkpoint_dir={tmp_path / 'cw'}"])
    )
    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch2()])
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [2]
    assert resumed["results"] == whole["results"]
    assert resumed["sparsity"]["layers"] == whole["sparsity"]["layers"]
