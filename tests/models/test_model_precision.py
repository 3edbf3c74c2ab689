"""Every model runs in channels_last, and under CPU bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from zoo_test_utils import ALL_MODELS, input_batch

from spfde_core.models import build_model


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_and_bf16_autocast(name: str) -> None:
    model = build_model(name, 10).eval()
    x = input_batch(name, batch=1 if name in ("resnet18", "resnet50") else 2)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x_cl), reference, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x_cl)
    assert low.shape == reference.shape
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    error = (low.float() - reference).norm() / reference.norm()
    assert error < 0.05  # measured ~0.003-0.008 on these random inits


def test_bf16_autocast_backward_channels_last() -> None:
    model = build_model("resnet20", 10).to(memory_format=torch.channels_last)
    x = input_batch("resnet20").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
