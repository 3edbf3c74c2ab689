"""The fused masked SGD update as one multi-tensor Triton kernel launch (CUDA; docs/fused_update.md).

Same element rule as ``csrc/fused_sgd.cpp`` (see :func:`spfde_core.ops.fused_update.eager_masked_update`).
One launch covers every parameter: the host writes a table of each tensor's raw addresses
(weight, gradient, momentum buffer, mask), sizes, flags and hyper-parameters, plus a block map
(program -> tensor, first element), copies it to the device, and each program updates ``BLOCK``
elements of one tensor. One launch instead of ~160 (ResNet-50) keeps the per-step launch overhead
at a single kernel. The flags are runtime values, uniform within a program, so one compiled kernel
serves every combination.

Verified without a GPU: ``TRITON_INTERPRET=1`` runs this kernel on CPU tensors through Triton's
interpreter (the addresses are then host addresses), see tests/ops/test_fused_update.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl

BLOCK = 1024
_BLOCK_MAPS: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}


@triton.jit
def _masked_sgd_kernel(addr_ptr, meta_ptr, scal_ptr, block_tensor_ptr, block_start_ptr, BLOCK: tl.constexpr):
    """Program ``pid`` updates elements [start, start + BLOCK) of tensor ``t`` (flag bits as in fused_sgd.cpp)."""
    pid = tl.program_id(0)
    t = tl.load(block_tensor_ptr + pid).to(tl.int64)
    start = tl.load(block_start_ptr + pid)
    w_ptr = tl.load(addr_ptr + 4 * t).to(tl.pointer_type(tl.float32))
    g_ptr = tl.load(addr_ptr + 4 * t + 1).to(tl.pointer_type(tl.float32))
    n = tl.load(meta_ptr + 2 * t)
    flags = tl.load(meta_ptr + 2 * t + 1)
    lr = tl.load(scal_ptr + 4 * t)
    wd = tl.load(scal_ptr + 4 * t + 1)
    mu = tl.load(scal_ptr + 4 * t + 2)
    keep = 1.0 - tl.load(scal_ptr + 4 * t + 3)
    offs = start + tl.arange(0, BLOCK)
    ok = offs < n
    w = tl.load(w_ptr + offs, mask=ok, other=0.0)
    g = tl.load(g_ptr + offs, mask=ok, other=0.0)
    m = tl.full([BLOCK], 1.0, tl.float32)
    if (flags & 1) != 0:  # mask
        m_ptr = tl.load(addr_ptr + 4 * t + 3).to(tl.pointer_type(tl.int8))
        m = tl.load(m_ptr + offs, mask=ok, other=0).to(tl.float32)
        g = g * m
    if (flags & 32) != 0:  # weight decay
        g = tl.fma(w, wd, g)
    d = g
    if (flags & 2) != 0:  # momentum
        b_ptr = tl.load(addr_ptr + 4 * t + 2).to(tl.pointer_type(tl.float32))
        b = g
        if (flags & 4) == 0:  # not the first step: read the buffer
            b = tl.fma(g, keep, tl.load(b_ptr + offs, mask=ok, other=0.0) * mu)
        d = b
        if (flags & 8) != 0:  # nesterov
            d = tl.fma(b, mu, g)
        if (flags & 16) != 0:  # reset_momentum: mask the buffer (m = 1 without a mask)
            tl.store(b_ptr + offs, b * m, mask=ok)
        else:
            tl.store(b_ptr + offs, b, mask=ok)
    w = tl.fma(d, -lr, w)
    if (flags & 1) != 0:
        w = w * m
    tl.store(w_ptr + offs, w, mask=ok)


def _block_map(numel: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tensor index, first element) per program, cached per (device, sizes): the sizes rarely change."""
    key = (str(device), tuple(numel))
    if key not in _BLOCK_MAPS:
        blocks = torch.tensor([triton.cdiv(n, BLOCK) for n in numel], dtype=torch.int64)
        tensor = torch.repeat_interleave(torch.arange(len(numel), dtype=torch.int32), blocks)
        first = torch.cumsum(blocks, 0) - blocks
        start = (torch.arange(len(tensor), dtype=torch.int64) - first[tensor.long()]) * BLOCK
        if len(_BLOCK_MAPS) > 8:
            _BLOCK_MAPS.clear()
        _BLOCK_MAPS[key] = (tensor.to(device), start.to(device))
    return _BLOCK_MAPS[key]


def triton_masked_sgd(batch: Any, tensors: Sequence[tuple[torch.Tensor, ...]]) -> None:
    """Update every tensor of ``batch`` (a ``fused_update._Batch``) in one launch; ``tensors`` keeps the
    (weight, grad, buffer, mask, flags) tuples alive and gives the device."""
    if not tensors:
        return
    device = tensors[0][0].device
    if any(t[0].device != device for t in tensors):
        raise ValueError("triton_masked_sgd: all parameters must be on one device")
    n = len(batch)
    addresses = [a for row in zip(batch.weights, batch.grads, batch.bufs, batch.masks, strict=True) for a in row]
    meta = [v for row in zip(batch.numel, batch.flags, strict=True) for v in row]
    scal = [v for row in zip(batch.lr, batch.wd, batch.momentum, batch.dampening, strict=True) for v in row]
    ints = torch.tensor(addresses + meta, dtype=torch.int64).to(device, non_blocking=True)
    floats = torch.tensor(scal, dtype=torch.float32).to(device, non_blocking=True)
    block_tensor, block_start = _block_map(batch.numel, device)
    _masked_sgd_kernel[(len(block_tensor),)](ints, ints[4 * n :], floats, block_tensor, block_start, BLOCK=BLOCK)
