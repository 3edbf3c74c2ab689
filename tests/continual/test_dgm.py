"""DGM: the per-tensor percentile mask of the script, refreshed every `refresh_batches` batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from spfde_core.continual.dgm import DynamicGradientMasking, percentile, percentile_mask
from spfde_core.models import build_model


def test_percentile_matches_numpy_linear_interpolation() -> None:
    values = torch.randn(1001).abs()
    for q in (0.0, 0.5, 0.8, 0.95, 1.0):
        assert percentile(values, q).item() == pytest.approx(float(np.percentile(values.numpy(), 100 * q)), rel=1e-6)


def test_mask_keeps_the_top_of_the_whole_tensor_masked_zeros_included() -> None:
    torch.manual_seed(0)
    grad = torch.randn(64, 16, 3, 3)
    weight_mask = torch.rand(grad.shape) >= 0.75  # 75 % of the weights pruned
    original = grad.clone()
    keep = percentile_mask(grad, weight_mask, 0.8)
    survivors = original[weight_mask].abs()
    threshold = np.percentile((original * weight_mask).abs().numpy(), 80)
    assert (grad[~weight_mask] == 0).all()  # pruned weights' gradients are gone
    assert torch.equal(keep, grad != 0) and torch.equal(grad[keep], original[keep])  # kept entries untouched
    assert (original[keep].abs() >= threshold).all() and (original[weight_mask & ~keep].abs() < threshold).all()
    # the script's arithmetic: about 80 % of the surviving weights' gradients stay, 20 % of all entries
    assert keep.sum().item() / weight_mask.sum().item() == pytest.approx(0.8, abs=0.02)
    assert keep.float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert survivors.numel() == weight_mask.sum()


def test_mask_is_reused_between_refreshes_and_rebuilt_at_them() -> None:
    model = build_model("resnet20", 10, width=0.25)
    cfg = OmegaConf.create({"continual": {"dgm": {"sparsity": 0.5, "refresh_batches": 2}}})
    dgm = DynamicGradientMasking(cfg, type("S", (), {"model": model})())
    dgm.on_epoch_start(None)
    conv = model.prunable_layers()[1].module

    def backward(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        before = conv.weight.grad.clone()
        dgm.after_backward(None, None)
        return before

    backward(0)
    first = conv.weight.grad != 0
    assert first.float().mean().item() == pytest.approx(0.5, abs=0.01)
    before = backward(1)  # batch 1: the batch-0 mask, not a new percentile
    assert torch.equal(conv.weight.grad, before * first)
    backward(2)  # batch 2: refreshed on the new gradient
    assert not torch.equal(conv.weight.grad != 0, first)
    assert dgm.refreshes == 2 and dgm.steps == 3
