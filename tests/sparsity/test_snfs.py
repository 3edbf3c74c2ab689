"""SNFS: allocation, momentum redistribution and growth, the dense momentum, smoke run and resume."""

from __future__ import annotations

import math

import pytest
import torch
from sparsity_test_utils import StepInvariants, hand_context

from spfde_core.cli import load_config
from spfde_core.ops.fused_update import MaskedSGD
from spfde_core.sparsity.snfs import SNFS, SNFSConfig, proportional_allocation, prune_rate_at, snfs_plan
from spfde_core.train.run import run_training


def test_proportional_allocation_is_exact_capped_and_water_filled() -> None:
    assert proportional_allocation(10, [1.0, 1.0], [100, 100]) == [5, 5]
    assert proportional_allocation(10, [3.0, 1.0], [100, 100]) == [8, 2]  # 7.5 / 2.5: tie to the first
    # The first layer's share (9) exceeds its cap (4): the excess goes to the others, proportionally.
    assert proportional_allocation(12, [3.0, 0.5, 0.5], [4, 100, 100]) == [4, 4, 4]
    assert proportional_allocation(7, [0.0, 0.0], [3, 10]) == [2, 5]  # no weight: by capacity
    assert proportional_allocation(5, [math.nan, 1.0], [10, 10]) == [0, 5]
    with pytest.raises(ValueError, match="capacity"):
        proportional_allocation(11, [1.0], [10])


def test_plan_moves_budget_to_the_layer_with_larger_momentum_and_preserves_the_total() -> None:
    actives, sizes = [100, 100, 50], [1000, 1000, 1000]
    removed, regrowth = snfs_plan(actives, sizes, [0.1, 0.3, 0.1], 0.5)
    assert removed == [50, 50, 25]  # ceil(0.5 * active)
    assert sum(regrowth) == sum(removed) == 125
    assert regrowth == [25, 75, 25]  # shares 0.2 / 0.6 / 0.2
    final = [a - r + g for a, r, g in zip(actives, removed, regrowth, strict=True)]
    assert final[1] > actives[1] and final[0] < actives[0] and sum(final) == sum(actives)
    # A layer at full density cannot take more: its share goes to the others.
    removed, regrowth = snfs_plan([10, 10], [10, 1000], [0.9, 0.1], 0.5)
    assert sum(regrowth) == sum(removed) and 10 - removed[0] + regrowth[0] <= 10


def test_prune_rate_cosine_decay() -> None:
    assert prune_rate_at(0.5, 0.005, 0, 100) == pytest.approx(0.5)
    assert prune_rate_at(0.5, 0.005, 50, 100) == pytest.approx(0.005 + 0.495 / 2)
    assert prune_rate_at(0.5, 0.005, 100, 100) == pytest.approx(0.005)


def _ctx():
    g = torch.Generator().manual_seed(5)
    weights = {"a": torch.randn(10, 10, 1, 1, generator=g), "b": torch.randn(10, 10, 1, 1, generator=g)}
    cfg = SNFSConfig(target=0.8, prune_rate=0.5, prune_rate_min=0.5)  # p = 0.5 flat
    ctx = hand_context(weights, {"a": 0.8, "b": 0.8}, cfg, epochs=4)
    params = [layer.weight for layer in ctx.masks]
    ctx.state.optimizer = MaskedSGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    ctx.state.optimizer.register_masks({layer.name: layer.module for layer in ctx.masks}, mask_momentum=True)
    snfs = SNFS(cfg)
    snfs.init_masks(ctx)
    with torch.no_grad():
        for layer in ctx.masks:
            layer.weight.mul_(layer.mask)
    return ctx, snfs


def test_update_redistributes_by_momentum_and_grows_largest_momentum() -> None:
    ctx, snfs = _ctx()
    a, b = ctx.masks.layers
    g = torch.Generator().manual_seed(6)
    snfs.momentum = {
        "a": 0.1 * torch.randn(a.weight.shape, generator=g),
        "b": torch.randn(b.weight.shape, generator=g),
    }
    olds = [a.mask.clone(), b.mask.clone()]
    ctx.state.epoch, ctx.state.step = 1, 10
    assert snfs.on_epoch_start(ctx)
    counts = [int(a.mask.sum()), int(b.mask.sum())]
    assert sum(counts) == 40  # total preserved exactly
    assert counts[1] > 20 > counts[0]  # b (10x larger momentum) gained budget from a
    for layer, old, count in zip((a, b), olds, counts, strict=True):
        assert layer.target == pytest.approx(1 - count / 100)
        # ceil(0.5 * 20) = 10 smallest |w| removed: the 10 largest of the old mask are kept.
        top = torch.topk(torch.where(old, layer.weight.detach().abs(), -1.0).flatten(), 10).indices
        kept = torch.zeros(100, dtype=torch.bool)
        kept[top] = True
        kept = kept.view_as(old)
        assert torch.equal(layer.mask & kept, kept)
        # Regrown: the largest |momentum| among positions inactive after the prune (a just-pruned
        # weight may come back, as sparse_learning's momentum_growth allows).
        grown = layer.mask & ~kept
        assert int(grown.sum()) == count - 10
        m = snfs.momentum[layer.name].abs()
        assert float(m[grown].min()) >= float(m[~layer.mask].max())


def test_dense_momentum_follows_the_sgd_rule_and_regrown_weights_get_it() -> None:
    ctx, snfs = _ctx()
    a = ctx.masks.layers[0]
    opt = ctx.state.optimizer
    g = torch.Generator().manual_seed(7)
    expected = None
    for _ in range(3):
        for layer in ctx.masks:
            layer.weight.grad = torch.randn(layer.weight.shape, generator=g)
        d = a.weight.grad + 5e-4 * a.weight.detach()
        expected = d.clone() if expected is None else 0.9 * expected + d
        snfs.after_backward(ctx)
        opt.step()  # masks grads, weights and (reset_momentum) momentum
    assert torch.allclose(snfs.momentum["a"], expected)
    assert torch.all(opt.state[a.weight]["momentum_buffer"][~a.mask] == 0)  # the engine's reset
    old = a.mask.clone()
    ctx.state.epoch = 1
    snfs.on_epoch_start(ctx)
    fresh = a.mask & ~old
    assert fresh.any()
    assert torch.equal(opt.state[a.weight]["momentum_buffer"][fresh], snfs.momentum["a"][fresh])


def test_only_unstructured() -> None:
    with pytest.raises(ValueError, match="sparsity.scheme=unstructured"):
        SNFS(SNFSConfig(scheme="block"))


SMOKE = ["sparsity=snfs", "train.epochs=3", "train.max_batches_per_epoch=4"]


@pytest.mark.smoke
def test_snfs_smoke_run_keeps_invariants(smoke_overrides) -> None:
    checker = StepInvariants()
    record = run_training(load_config([*smoke_overrides, *SMOKE]), extra_callbacks=[checker])
    assert checker.steps == 12
    block = record["sparsity"]
    assert block["method"] == "snfs" and block["num_mask_updates"] == 2
    total = sum(layer["size"] for layer in block["layers"])
    assert sum(layer["active"] for layer in block["layers"]) == sum(
        round(0.1 * layer["size"]) for layer in block["layers"]
    )  # the global budget is kept exactly while layers trade weights
    assert block["sparse_layers_density"] == pytest.approx(0.1, abs=1 / total * len(block["layers"]))
    assert len({round(layer["target_sparsity"], 6) for layer in block["layers"]}) > 1  # budget moved
    assert block["exploration_rate"] > 0.1
    assert not torch.equal(checker.mask_history[0], checker.mask_history[-1])


class Kill(Exception):
    pass


class KillInEpoch2:
    def on_batch_start(self, state, batch) -> None:
        if state.epoch == 2 and state.step == 9:
            raise Kill


@pytest.mark.smoke
def test_snfs_resume_after_kill_matches_uninterrupted_run(smoke_overrides, tmp_path) -> None:
    overrides = [*smoke_overrides, *SMOKE]
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
