"""RigL: the drop/grow rule on hand-made tensors, the schedule, a smoke run's invariants, resume."""

from __future__ import annotations

import math

import pytest
import torch
from sparsity_test_utils import StepInvariants, hand_context

from spfde_core.cli import load_config
from spfde_core.sparsity.rigl import RigL, RigLConfig, drop_and_grow, is_update_step, scheduled_fraction
from spfde_core.sparsity.schemes import get_scheme
from spfde_core.train.run import run_training


def test_drops_smallest_weights_and_grows_largest_gradients_among_inactive() -> None:
    w = torch.tensor([[0.9, -0.05, 0.0, 0.4, -0.1, 0.0, 0.7, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 1, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)  # 5 active
    grad = torch.tensor([[9.0, 5.0, 0.1, 9.0, 0.2, 3.0, 9.0, 0.3, 0.0, 4.0]])  # active grads irrelevant
    new, kept = drop_and_grow(get_scheme("unstructured"), mask, w, 0.5, 0.4, grad.square())
    # int(5 * 0.4) = 2 dropped: -0.05 (index 1) and -0.1 (index 4) ...
    assert kept.flatten().nonzero().flatten().tolist() == [0, 3, 6]
    # ... and the 2 largest |grad| among positions inactive after the drop: index 1 (just dropped,
    # grad 5, RigL's candidates include it) and index 9 (grad 4); index 5 (grad 3) is not grown.
    assert new.flatten().nonzero().flatten().tolist() == [0, 1, 3, 6, 9]


def test_block_scheme_drops_and_grows_whole_blocks() -> None:
    scheme = get_scheme("block", block_size=4)
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(8, 4, 3, 3, generator=g), torch.randn(8, 4, 3, 3, generator=g)
    mask = scheme.grow(torch.zeros(8, 4, 3, 3, dtype=torch.bool), 0.75, None, g)
    new, kept = drop_and_grow(scheme, mask, w * mask, 0.75, 0.3, grad.square())
    assert int(new.sum()) == int(mask.sum()) == scheme.active_count(w.shape, 0.75)
    assert int(kept.sum()) < int(mask.sum())
    scheme.prune(new, torch.ones_like(w), 0.0)  # raises if any 4x1 block is partially active


def test_cosine_and_constant_drop_fraction() -> None:
    assert scheduled_fraction(0.3, "cosine", 0, 750) == pytest.approx(0.3)
    assert scheduled_fraction(0.3, "cosine", 375, 750) == pytest.approx(0.15)
    assert scheduled_fraction(0.3, "cosine", 250, 750) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))
    assert scheduled_fraction(0.3, "cosine", 750, 750) == pytest.approx(0.0)
    assert scheduled_fraction(0.3, "constant", 500, 750) == 0.3
    with pytest.raises(ValueError, match="drop_fraction_schedule"):
        scheduled_fraction(0.3, "linear", 0, 750)


def test_updates_only_at_interval_multiples_before_end_fraction() -> None:
    assert [s for s in range(100) if is_update_step(s, 10, 75.0)] == [10, 20, 30, 40, 50, 60, 70]
    # Through the method: 10 batches/epoch x 10 epochs = 100 steps, T_end = 75.
    g = torch.Generator().manual_seed(1)
    cfg = RigLConfig(update_interval_steps=10, end_fraction=0.75, target=0.8, drop_fraction_schedule="constant")
    ctx = hand_context({"conv": torch.randn(8, 8, 3, 3, generator=g)}, {"conv": 0.8}, cfg, epochs=10)
    rigl = RigL(cfg)
    rigl.init_masks(ctx)
    layer = ctx.masks.layers[0]
    updated, changed = [], 0
    for step in range(100):
        ctx.state.step = step
        layer.weight.grad = torch.randn(8, 8, 3, 3, generator=g)
        before = layer.mask.clone()
        if rigl.after_backward(ctx):
            updated.append(step)
            changed += not torch.equal(before, layer.mask)
            assert int(layer.mask.sum()) == round(0.2 * 576)
        else:
            assert torch.equal(before, layer.mask)
    assert updated == [10, 20, 30, 40, 50, 60, 70] and changed == 7
    # With the paper's cosine schedule the update at step 70 would drop int(115 * 0.0033) = 0 weights.
    cosine = RigL(RigLConfig(update_interval_steps=10, end_fraction=0.75))
    assert int(115 * cosine.drop_fraction(70, 75.0)) == 0 < int(115 * rigl.drop_fraction(70, 75.0))


def test_nm_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme=nm"):
        RigL(RigLConfig(scheme="nm"))


SMOKE = [
    "sparsity=rigl",
    "train.epochs=3",
    "train.max_batches_per_epoch=4",
    "sparsity.update_interval_steps=2",
]


@pytest.mark.smoke
def test_rigl_smoke_run_keeps_invariants(smoke_overrides) -> None:
    checker = StepInvariants()
    record = run_training(load_config([*smoke_overrides, *SMOKE]), extra_callbacks=[checker])
    assert checker.steps == 12
    block = record["sparsity"]
    # 12 steps, T_end = 0.75 * 12 = 9: updates at steps 2, 4, 6, 8.
    assert block["method"] == "rigl" and block["num_mask_updates"] == 4
    assert block["sparse_layers_density"] == pytest.approx(0.1, abs=0.002)
    for layer in block["layers"]:
        assert abs(layer["active"] - round((1 - layer["target_sparsity"]) * layer["size"])) <= 1
    assert block["exploration_rate"] > 0.1  # weights beyond the initial 10% were activated
    assert block["choices"]["dense_gradient"].startswith("only at update steps")
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])


class Kill(Exception):
    pass


class KillInEpoch:
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch and state.step == self.step:
            raise Kill


@pytest.mark.smoke
def test_rigl_resume_after_kill_matches_uninterrupted_run(smoke_overrides, tmp_path) -> None:
    overrides = [*smoke_overrides, *SMOKE]
    whole_cfg = load_config(
        [*overrides, f"run.results_dir={tmp_path / 'whole'}", f"run.checkpoint_dir={tmp_path / 'ckw'}"]
    )
    whole = run_training(whole_cfg)
    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch(2, 9)])  # after epoch 1's checkpoint
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [2]
    assert resumed["results"] == whole["results"]
    for key in ("layers", "exploration_rate", "num_mask_updates", "sparse_layers_density"):
        assert resumed["sparsity"][key] == whole["sparsity"][key]
