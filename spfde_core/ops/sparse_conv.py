"""Sparse convolution for training: forward, input gradient and weight gradient at the active weights only.

A masked dense layer computes ``conv(x, w * m)`` with dense kernels, so 90% sparsity saves nothing.
Here the weight is kept as CSR rows grouped by (output channel, tap) and the three products of a
training step run in native AVX-512 or AVX2 kernels (``csrc/spconv.cpp``, docs/sparse_kernels.md):

- forward ``y = W_s * x`` (sparse weight x dense activation),
- input gradient ``dx = W_s^T * dy`` (the same kernel on the transposed, tap-flipped weight),
- weight gradient ``dW = (dy x^T) . m``, a sampled dense-dense product computed only where ``m`` is 1
  (the gradient at inactive positions is exactly zero, as the masked dense path's after masking).

The sparsity structure (CSR indices of both orientations) is rebuilt only when the mask changes
(``mask._version``); the values are gathered from the live weight at every call, so the optimizer
updates the ordinary dense ``weight`` parameter and checkpoints are unchanged.

Supported: 2-D convolution with stride 1, dilation 1, groups 1, square odd kernel with "same"
padding, H*W a multiple of the kernels' lanes (16 with AVX-512, 8 with AVX2), fp32 or bf16
activations, and linear layers (a 1x1 convolution over a batch of 16k samples). Anything else reports
why via :func:`unsupported_reason`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spfde_core.ops import native

_FLOAT_DTYPES = (torch.float32, torch.bfloat16)


@dataclass
class SparsePlan:
    """The structure of one masked weight: forward and transposed CSR, plus the geometry tables."""

    version: tuple[int, int]  # (id of the mask tensor, its _version) the plan was built from
    nnz: int
    k: int
    fwd_rowptr: torch.Tensor  # int32 [Co*K2 + 1]
    fwd_cidx: torch.Tensor  # int32 [nnz]: input channel
    fwd_flat: torch.Tensor  # int64 [nnz]: index into weight.flatten()
    bwd_rowptr: torch.Tensor  # int32 [Ci*K2 + 1], grouped by (input channel, flipped tap)
    bwd_cidx: torch.Tensor  # int32 [nnz]: output channel
    bwd_flat: torch.Tensor  # int64 [nnz]
    block: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(rowptr [Co/4*K2 + 1], cidx [nnz/4], flat [nnz]) when every active (input channel, tap) is
    active for all 4 output channels of its group (MEST's 4x1 blocks): the forward and the weight
    gradient then use the block kernels, whose weights of one entry are adjacent in ``flat``."""


def build_plan(mask: torch.Tensor) -> SparsePlan:
    """CSR structure of a (Co, Ci, k, k) conv or (out, in) linear bool mask in both orientations.

    Entries are sorted (rows, then channel), so the plan and the kernels' summation order are deterministic.
    """
    version = (id(mask), mask._version)  # of the caller's buffer, before any reshaping view
    if mask.dim() == 2:
        mask = mask[:, :, None, None]
    co_n, ci_n, k, _ = mask.shape
    k2 = k * k
    m = mask.detach().to("cpu", torch.bool).contiguous().view(co_n, ci_n, k2)
    co, ci, tap = m.nonzero(as_tuple=True)
    flat = (co * ci_n + ci) * k2 + tap
    # forward: rows (co, tap), entries by input channel
    key = (co * k2 + tap) * ci_n + ci
    order = torch.argsort(key)
    fwd_rowptr = _rowptr((co * k2 + tap)[order], co_n * k2)
    block = None
    if _is_block_structured(m):  # rows (co // 4, tap), entries by input channel, a block's 4 weights adjacent
        order_b = torch.argsort(((co // BLOCK * k2 + tap) * ci_n + ci) * BLOCK + co % BLOCK)
        first = order_b[co[order_b] % BLOCK == 0]
        rowptr_b = _rowptr((co // BLOCK * k2 + tap)[first], co_n // BLOCK * k2)
        block = (rowptr_b, ci[first].to(torch.int32).contiguous(), flat[order_b].contiguous())
    # transposed: rows (ci, flipped tap), entries by output channel
    flipped = k2 - 1 - tap
    key_t = (ci * k2 + flipped) * co_n + co
    order_t = torch.argsort(key_t)
    bwd_rows = (ci * k2 + flipped)[order_t]
    return SparsePlan(
        version=version,
        nnz=int(flat.numel()),
        k=k,
        fwd_rowptr=fwd_rowptr,
        fwd_cidx=ci[order].to(torch.int32).contiguous(),
        fwd_flat=flat[order].contiguous(),
        bwd_rowptr=_rowptr(bwd_rows, ci_n * k2),
        bwd_cidx=co[order_t].to(torch.int32).contiguous(),
        bwd_flat=flat[order_t].contiguous(),
        block=block,
    )


BLOCK = 4  # csrc/spconv.cpp's BLK


def _is_block_structured(mask: torch.Tensor) -> bool:
    """(Co, Ci, K2) mask: every group of BLOCK consecutive output channels has identical rows."""
    if mask.shape[0] % BLOCK or not mask.any():
        return False
    grouped = mask.view(mask.shape[0] // BLOCK, BLOCK, -1)
    return bool((grouped == grouped[:, :1]).all())


def _rowptr(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    counts = torch.bincount(rows, minlength=num_rows)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(torch.int32).contiguous()


_GEOMETRY: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def geometry(h: int, w: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift[K2] int32, inside[HW * K2] uint8) of the float64 path: per tap the flat offset, per pixel
    and tap whether the tap reads inside the image (else it reads the zero padding)."""
    key = (h, w, k)
    if key not in _GEOMETRY:
        pad = k // 2
        dh = torch.arange(k).repeat_interleave(k) - pad
        dw = torch.arange(k).repeat(k) - pad
        shift = (dh * w + dw).to(torch.int32)
        p = torch.arange(h * w)
        rows, cols = p // w, p % w
        inside = ((rows[:, None] + dh) >= 0) & ((rows[:, None] + dh) < h)
        inside &= ((cols[:, None] + dw) >= 0) & ((cols[:, None] + dw) < w)  # [HW, K2]
        _GEOMETRY[key] = (shift.contiguous(), inside.to(torch.uint8).contiguous())
    return _GEOMETRY[key]


def unsupported_reason(module: nn.Module, input_hw: tuple[int, int] | None = None) -> str | None:
    """None if the sparse kernels can run this layer (on this input size); else why not."""
    if isinstance(module, nn.Linear):
        return None
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not Conv2d or Linear"
    k = module.kernel_size
    if k[0] != k[1] or k[0] % 2 == 0 or k[0] > 15:
        return f"kernel {k} is not square, odd and at most 15"
    if module.stride != (1, 1) or module.dilation != (1, 1) or module.groups != 1:
        return f"stride {module.stride}, dilation {module.dilation}, groups {module.groups} (needs 1, 1, 1)"
    if module.padding != (k[0] // 2, k[0] // 2) or module.padding_mode != "zeros":
        return f"padding {module.padding} ({module.padding_mode}) is not 'same' zero padding"
    if module.bias is not None:
        return "has a bias"
    if input_hw is not None and not _tileable(*input_hw, lanes=kernel_lanes()):
        lanes = kernel_lanes()
        return (
            f"input {input_hw[0]}x{input_hw[1]}: needs H*W a multiple of {lanes} and W a multiple or divisor of "
            f"{lanes} (the kernels' vector lanes here)"
        )
    return None


def kernel_lanes() -> int:
    """Float lanes per vector of the loaded kernels (16: AVX-512, 8: AVX2); 16 where they do not load."""
    try:
        return int(native.load("spconv").spconv_lanes())
    except native.NativeUnavailable:
        return 16


def _tileable(h: int, w: int, lanes: int = 16) -> bool:
    """The geometry rule of csrc/spconv.cpp's tiling (8 or 4 chunks of ``lanes`` pixels per tile)."""
    if (h * w) % lanes or not (w % lanes == 0 or lanes % w == 0):
        return False
    chunks = h * w // lanes

    def fits(tile: int) -> bool:
        return chunks % tile == 0 and (tile * lanes) % w == 0 if chunks >= tile else tile % chunks == 0

    return fits(8) or fits(4)


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _product(
    x: torch.Tensor, rowptr: torch.Tensor, cidx: torch.Tensor, vals: torch.Tensor, c_out: int, k: int, block: int = 1
) -> torch.Tensor:
    """out[n, r, p] = sum over CSR row r's entries (tap, c, v) of v * x[n, c, p + shift[tap]] (zero padded)."""
    n, c_in, h, w = x.shape
    out = torch.empty((n, c_out, h, w), dtype=x.dtype)
    if x.dtype == torch.float64:
        if block != 1:
            raise ValueError("the float64 path takes unstructured plans only")
        shift, masks = geometry(h, w, k)
        args = (n, c_in, c_out, h * w, k * k, _ptr(shift), _ptr(masks), _ptr(rowptr), _ptr(cidx))
        native.load("spconv").spconv_forward_f64(_ptr(x), _ptr(out), *args, _ptr(vals.double().contiguous()))
        return out
    bf16 = int(x.dtype == torch.bfloat16)
    vals = vals.float().contiguous()
    status = native.load("spconv").spconv_forward(
        _ptr(x), bf16, _ptr(out), bf16, n, c_in, c_out, h, w, k, block, _ptr(rowptr), _ptr(cidx), _ptr(vals),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(status, x.shape, k)
    return out


def _sampled(x: torch.Tensor, dy: torch.Tensor, plan: SparsePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """dW at the active weights (values, their indices into weight.flatten()): over images and pixels,
    sum of dy[co] * x[ci] shifted by the tap."""
    n, c_in, h, w = x.shape
    c_out, k = dy.shape[1], plan.k
    if x.dtype == torch.float64:
        shift, masks = geometry(h, w, k)
        args = (n, c_in, c_out, h * w, k * k, _ptr(shift), _ptr(masks), _ptr(plan.fwd_rowptr), _ptr(plan.fwd_cidx))
        out = torch.empty(plan.nnz, dtype=torch.float64)
        native.load("spconv").spconv_wgrad_f64(_ptr(x), _ptr(dy.double().contiguous()), *args, _ptr(out))
        return out, plan.fwd_flat
    block, (rowptr, cidx, flat) = (
        (BLOCK, plan.block) if plan.block else (1, (plan.fwd_rowptr, plan.fwd_cidx, plan.fwd_flat))
    )
    out = torch.empty(plan.nnz, dtype=torch.float32)
    x_bf16, dy_bf16 = int(x.dtype == torch.bfloat16), int(dy.dtype == torch.bfloat16)
    status = native.load("spconv").spconv_wgrad(
        _ptr(x), x_bf16, _ptr(dy), dy_bf16, n, c_in, c_out, h, w, k, block, _ptr(rowptr), _ptr(cidx), _ptr(out),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(status, x.shape, k)
    return out, flat


def _check(status: int, shape: torch.Size, k: int) -> None:
    if status != 0:
        raise ValueError(f"sparse kernels: unsupported input {tuple(shape)} with kernel {k} (see unsupported_reason)")


def kernel_supports(n: int, c: int, h: int, w: int, k: int) -> bool:
    """Whether the loaded kernels tile this geometry: H*W a multiple of their lanes and W a multiple or divisor."""
    return bool(native.load("spconv").spconv_supported(n, c, h, w, k))


class SparseConv2dFunction(torch.autograd.Function):
    """``conv2d(x, weight * mask)`` (stride 1, same padding) with sparse forward, input and weight gradients.

    Activations may be float32 or bfloat16 (AVX-512 or AVX2 kernels, float32 accumulation) or float64 (a
    scalar path with the same indexing, for gradcheck). The output has the input's dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, plan: SparsePlan) -> torch.Tensor:  # type: ignore[override]
        if x.dtype not in (*_FLOAT_DTYPES, torch.float64):
            raise TypeError(f"sparse_conv2d: activations must be float32, bfloat16 or float64, got {x.dtype}")
        x = x.contiguous()
        if plan.block is not None and x.dtype != torch.float64:
            rowptr, cidx, flat = plan.block
            y = _product(x, rowptr, cidx, weight.detach().flatten()[flat], weight.shape[0], plan.k, BLOCK)
        else:
            vals = weight.detach().flatten()[plan.fwd_flat]
            y = _product(x, plan.fwd_rowptr, plan.fwd_cidx, vals, weight.shape[0], plan.k)
        ctx.save_for_backward(x, weight)
        ctx.plan = plan
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        plan: SparsePlan = ctx.plan
        dy = dy.to(x.dtype).contiguous()
        dx = dweight = None
        if ctx.needs_input_grad[0]:
            vals_t = weight.detach().flatten()[plan.bwd_flat]
            dx = _product(dy, plan.bwd_rowptr, plan.bwd_cidx, vals_t, x.shape[1], plan.k)
        if ctx.needs_input_grad[1]:
            flat = torch.zeros(weight.numel(), dtype=weight.dtype)
            values, index = _sampled(x, dy, plan)
            flat[index] = values.to(weight.dtype)
            dweight = flat.view(weight.shape)
            if weight.dim() == 4 and not weight.is_contiguous():  # keep the parameter's memory format
                dweight = dweight.contiguous(memory_format=torch.channels_last)
        return dx, dweight, None


def sparse_conv2d(x: torch.Tensor, weight: torch.Tensor, plan: SparsePlan) -> torch.Tensor:
    """Differentiable ``conv2d(x, weight * mask, padding=k//2)`` using the plan's mask."""
    return SparseConv2dFunction.apply(x, weight, plan)


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, plan: SparsePlan) -> torch.Tensor:
    """Differentiable ``x @ (weight * mask).T`` for x (B, in): a 1x1 sparse convolution over one
    "image" whose pixels are the samples (B zero-padded to 16, 32, 64 or a multiple of 128, the
    sizes the kernels tile)."""
    b, i = x.shape
    padded = next((size for size in (16, 32, 64) if b <= size), -(-b // 128) * 128)
    columns = torch.zeros(i, padded, dtype=x.dtype) if padded != b else None
    if columns is None:
        as_image = x.t().reshape(1, i, padded // 16, 16)
    else:
        as_image = torch.cat([x.t(), columns[:, b:]], dim=1).reshape(1, i, padded // 16, 16)
    y = SparseConv2dFunction.apply(as_image, weight.view(weight.shape[0], i, 1, 1), plan)
    return y.reshape(weight.shape[0], padded)[:, :b].t()


def masked_dense_reference(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the sparse kernels compute, with dense kernels (the masked dense path)."""
    if weight.dim() == 2:
        return F.linear(x, weight * mask)
    return F.conv2d(x, weight * mask, padding=weight.shape[-1] // 2)
