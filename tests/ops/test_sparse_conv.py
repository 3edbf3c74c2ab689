"""Sparse convolution kernels: outputs and gradients equal the masked dense layer's (issue 7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spfde_core.ops import native
from spfde_core.ops.sparse_conv import (
    build_plan,
    kernel_lanes,
    kernel_supports,
    masked_dense_reference,
    sparse_conv2d,
    sparse_linear,
    unsupported_reason,
)

pytestmark = pytest.mark.skipif(
    native.unavailable_reason("spconv") is not None, reason=str(native.unavailable_reason("spconv"))
)


def _mask(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize(
    ("n", "c_in", "c_out", "h", "w", "k"),
    [
        (2, 3, 4, 4, 4, 3),  # one chunk per image: 8 images per tile, a partial tile
        (1, 2, 3, 4, 8, 3),  # W < 16: two rows per chunk, lane masks
        (2, 3, 2, 8, 2, 1),  # 1x1
        (1, 2, 2, 4, 4, 5),  # 5x5, halo of 2
        (1, 2, 3, 8, 16, 3),  # W = 16: zero columns, no masks
    ],
)
def test_gradcheck_float64(n: int, c_in: int, c_out: int, h: int, w: int, k: int) -> None:
    x = torch.randn(n, c_in, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c_out, c_in, k, k, dtype=torch.float64, requires_grad=True)
    plan = build_plan(_mask(weight.shape, 0.6, seed=k))
    assert torch.autograd.gradcheck(lambda a, b: sparse_conv2d(a, b, plan), (x, weight))


def test_gradcheck_float64_any_plane() -> None:
    """The float64 path indexes any plane (here 3x5: no lane multiple), so gradcheck covers odd sizes too."""
    x = torch.randn(2, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    plan = build_plan(_mask(weight.shape, 0.6, seed=4))
    assert torch.autograd.gradcheck(lambda a, b: sparse_conv2d(a, b, plan), (x, weight))


def test_tiling_rule_is_the_kernels() -> None:
    """unsupported_reason's plane rule (Python) says exactly what the loaded kernels accept (C++), for
    this build's lanes (16 with AVX-512, 8 with AVX2: e.g. 2x4 planes tile only with 8 lanes)."""
    lanes = kernel_lanes()
    assert lanes == (16 if native.select_target("spconv").name == "avx512" else 8)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    for h in range(1, 20):
        for w in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64):
            reason = unsupported_reason(conv, (h, w))
            assert (reason is None) == kernel_supports(2, 4, h, w, 3), (h, w, reason)
    assert (unsupported_reason(conv, (2, 4)) is None) == (lanes == 8)


def test_gradcheck_linear_float64() -> None:
    x = torch.randn(32, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    plan = build_plan(_mask(weight.shape, 0.5, seed=1))
    assert torch.autograd.gradcheck(lambda a, b: sparse_linear(a, b, plan), (x, weight))


# Every tiling of csrc/spconv.cpp: rows of one image (W = 32, 64), whole images (W = 16, 8, 4),
# a partial last tile (N not a multiple of the images per tile), 1x1 and 5x5 kernels, lane masks
# (W < lanes: 4 with AVX-512 and AVX2, 8 with AVX-512), and a 2x4 plane that only AVX2's 8 lanes tile.
SHAPES = [
    (4, 32, 32, 32, 32, 3),
    (3, 16, 8, 16, 16, 3),
    (5, 8, 12, 8, 8, 3),
    (9, 3, 5, 4, 4, 3),
    (2, 4, 6, 8, 64, 3),
    (2, 8, 8, 16, 16, 1),
    (2, 4, 4, 8, 8, 5),
    (7, 3, 4, 2, 4, 3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("n", "c_in", "c_out", "h", "w", "k"), SHAPES)
def test_matches_masked_dense(n: int, c_in: int, c_out: int, h: int, w: int, k: int, dtype: torch.dtype) -> None:
    if not kernel_supports(n, c_in, h, w, k):
        pytest.skip(f"{h}x{w} planes do not tile with {kernel_lanes()} lanes")
    torch.manual_seed(0)
    x = torch.randn(n, c_in, h, w).to(dtype).requires_grad_()
    weight = torch.randn(c_out, c_in, k, k, requires_grad=True)
    mask = _mask(weight.shape, 0.1, seed=3)
    y = sparse_conv2d(x, weight, build_plan(mask))
    assert y.dtype == dtype and y.shape == (n, c_out, h, w)
    dy = torch.randn(y.shape).to(dtype)
    y.backward(dy)

    x_ref = x.detach().double().requires_grad_()
    w_ref = weight.detach().double().requires_grad_()
    y_ref = masked_dense_reference(x_ref, w_ref, mask)
    y_ref.backward(dy.double())
    # bf16 activations: inputs are exact in float64, so the error is the bf16 rounding of the output
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    assert _relative_error(y, y_ref) < tolerance
    assert _relative_error(x.grad, x_ref.grad) < tolerance
    assert _relative_error(weight.grad, w_ref.grad * mask) < 1e-5  # float32 accumulation either way
    assert torch.count_nonzero(weight.grad[~mask]) == 0  # inactive weights get exactly zero gradient


def test_linear_matches_masked_dense() -> None:
    x = torch.randn(48, 20, requires_grad=True)  # padded to 64 samples inside
    weight = torch.randn(10, 20, requires_grad=True)
    mask = _mask(weight.shape, 0.2, seed=5)
    y = sparse_linear(x, weight, build_plan(mask))
    y.sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    w_ref = weight.detach().clone().requires_grad_()
    masked_dense_reference(x_ref, w_ref, mask).sum().backward()
    assert _relative_error(y, masked_dense_reference(x_ref, w_ref, mask)) < 1e-5
    assert _relative_error(x.grad, x_ref.grad) < 1e-5
    assert _relative_error(weight.grad, w_ref.grad * mask) < 1e-5


def test_plan_is_deterministic_and_counts_the_mask() -> None:
    mask = _mask((8, 4, 3, 3), 0.3, seed=7)
    a, b = build_plan(mask), build_plan(mask.clone())
    assert a.nnz == b.nnz == int(mask.sum())
    assert torch.equal(a.fwd_flat, b.fwd_flat) and torch.equal(a.bwd_flat, b.bwd_flat)
    # both orientations hold every active position exactly once
    assert torch.equal(a.fwd_flat.sort().values, mask.flatten().nonzero().squeeze(1))
    assert torch.equal(a.bwd_flat.sort().values, mask.flatten().nonzero().squeeze(1))
    assert a.fwd_rowptr[-1] == a.bwd_rowptr[-1] == a.nnz


def test_values_follow_the_live_weight() -> None:
    """The plan caches structure only: an optimizer step on the weight changes the output."""
    x = torch.randn(2, 4, 8, 8)
    weight = torch.randn(4, 4, 3, 3)
    mask = _mask(weight.shape, 0.5, seed=2)
    plan = build_plan(mask)
    before = sparse_conv2d(x, weight, plan)
    weight.mul_(2.0)
    assert torch.allclose(sparse_conv2d(x, weight, plan), 2.0 * before, rtol=1e-5, atol=1e-5)


def test_unsupported_layers_are_named() -> None:
    assert unsupported_reason(nn.Conv2d(4, 4, 3, padding=1, bias=False)) is None
    assert "stride" in unsupported_reason(nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False))
    assert "bias" in unsupported_reason(nn.Conv2d(4, 4, 3, padding=1))
    assert "square, odd" in unsupported_reason(nn.Conv2d(4, 4, 2, bias=False))
    assert "at most 15" in unsupported_reason(nn.Conv2d(4, 4, 17, padding=8, bias=False))
    assert "padding" in unsupported_reason(nn.Conv2d(4, 4, 3, padding=0, bias=False))
    assert "H*W" in unsupported_reason(nn.Conv2d(4, 4, 3, padding=1, bias=False), (7, 7))
    assert not kernel_supports(2, 4, 7, 7, 3) and kernel_supports(2, 4, 8, 8, 3)
    with pytest.raises(ValueError, match="unsupported input"):
        sparse_conv2d(torch.randn(1, 4, 7, 7), torch.randn(4, 4, 3, 3), build_plan(_mask((4, 4, 3, 3), 0.5, 0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("n", "c_in", "c_out", "h", "w", "k"), [SHAPES[0], SHAPES[2], (9, 3, 8, 4, 4, 3), SHAPES[5]])
def test_block_masks_take_the_block_kernels_and_match(n, c_in, c_out, h, w, k, dtype) -> None:
    """MEST's 4x1 blocks (4 consecutive output channels share each active position)."""
    torch.manual_seed(1)
    groups = _mask((c_out // 4, 1, c_in, k, k), 0.2, seed=4)
    mask = groups.expand(c_out // 4, 4, c_in, k, k).reshape(c_out, c_in, k, k).contiguous()
    plan = build_plan(mask)
    assert plan.block is not None and plan.nnz == int(mask.sum())
    assert build_plan(_mask(mask.shape, 0.2, seed=4)).block is None  # unstructured masks do not
    x = torch.randn(n, c_in, h, w).to(dtype).requires_grad_()
    weight = torch.randn(c_out, c_in, k, k, requires_grad=True)
    y = sparse_conv2d(x, weight, plan)
    dy = torch.randn(y.shape).to(dtype)
    y.backward(dy)
    x_ref = x.detach().double().requires_grad_()
    w_ref = weight.detach().double().requires_grad_()
    masked_dense_reference(x_ref, w_ref, mask).backward(dy.double())
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    assert _relative_error(y, masked_dense_reference(x_ref, w_ref, mask)) < tolerance
    assert _relative_error(x.grad, x_ref.grad) < tolerance
    assert _relative_error(weight.grad, w_ref.grad * mask) < 1e-5
    assert torch.count_nonzero(weight.grad[~mask]) == 0
