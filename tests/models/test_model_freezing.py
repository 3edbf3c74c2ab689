"""num_frozen_blocks: frozen prefix gets no gradients, and the output does not change."""

from __future__ import annotations

import pytest
import torch
from zoo_test_utils import input_batch

from spfde_core.models import build_model


def _grads_after_backward(model: torch.nn.Module, x: torch.Tensor) -> list[list[bool]]:
    model.zero_grad(set_to_none=True)
    model(x).square().sum().backward()
    return [[p.grad is not None for p in block.parameters()] for block in model.blocks]


@pytest.mark.parametrize(
    ("name", "k"),
    [("resnet32_w2", 1), ("resnet32_w2", 6), ("resnet32_w2", 16), ("vgg19", 5), ("resnet18", 3)],
)
def test_frozen_prefix_gets_no_gradients(name: str, k: int) -> None:
    model = build_model(name, 10)
    x = input_batch(name, batch=2 if name != "resnet18" else 1)
    if name == "resnet18":
        x = x[:, :, :64, :64]  # any size works for the ImageNet ResNets; keep it cheap
    model.train()
    assert all(all(flags) for flags in _grads_after_backward(model, x))
    model.num_frozen_blocks = k
    flags = _grads_after_backward(model, x)
    assert not any(any(f) for f in flags[:k])
    assert all(all(f) for f in flags[k:])


def test_frozen_forward_unchanged_and_frozen_activations_not_tracked() -> None:
    model = build_model("resnet32_w2", 10).eval()
    x = input_batch("resnet32_w2")
    reference = model(x)
    for k in (1, 8, 16):
        model.num_frozen_blocks = k
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
    # With every block but the head frozen, only the head builds an autograd graph.
    out = model(x)
    assert out.grad_fn is not None
    torch.autograd.grad(out.sum(), list(model.blocks[-1].parameters()))
    with pytest.raises(RuntimeError):
        torch.autograd.grad(out.sum(), list(model.blocks[0].parameters()), allow_unused=False)
