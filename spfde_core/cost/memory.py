"""SpFDE's training-memory model (fp32) and the measured peak memory of a run.

The model counts four components for a batch of ``batch_size`` samples (every value 4 bytes):

- **weights**: every conv/linear weight and bias, BN gamma/beta and running mean/var. A sparse
  layer (one with a ``weight_mask``) stores its active values plus a **bitmask index: 1 bit per
  dense position** (``ceil(numel / 8)`` bytes). A bitmask costs 1/32 of a dense fp32 tensor whatever
  the density, so it beats CSR with int32 column indices (4 bytes per non-zero plus row pointers)
  at every density above ~3%, i.e. at all the sparsities the benchmark runs (<= 98%), and it is
  exactly how the masks are held in training (bool masks, packed 8 per byte when checkpointed).
- **weight gradients**: for trainable layers only (frozen blocks need none); a sparse layer's
  gradient holds its active values only and shares the weight's bitmask.
- **activations** kept for the backward pass: only ops whose backward runs (trainable, or on the
  gradient path) keep anything, so a frozen prefix keeps none. Saved per op: conv/linear their input
  (for the weight gradient, if trainable), BN its input, ReLU its output, max-pool its input;
  add/avg-pool nothing. A tensor saved by two ops is counted once.
- **activation gradients**: the live peak during the backward pass, ``max`` over the ops whose
  output needs a gradient of (output-gradient + input-gradient elements): autograd frees each
  activation gradient once it has been consumed, so they never all exist at once.

Not counted: optimizer state (SGD momentum: one value per trainable weight), the input batch
pipeline, framework workspace and allocator slack. The measured peak (``measured_peak``) covers all.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from spfde_core.cost.layers import ModelProfile

BYTES_PER_VALUE = 4  # fp32
SPARSE_FORMAT = "bitmask (1 bit per dense position) + fp32 active values"


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes of each component of the memory model."""

    weights: int
    """Weight values (dense layers: all; sparse layers: active only) and BN parameters/statistics."""
    weight_index: int
    """Bitmask index of the sparse layers (1 bit per dense position)."""
    activations: int
    weight_grads: int
    activation_grads: int

    @property
    def total(self) -> int:
        return self.weights + self.weight_index + self.activations + self.weight_grads + self.activation_grads

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def memory_model(
    profile: ModelProfile,
    active: Mapping[str, int] | None = None,
    frozen_blocks: int = 0,
    batch_size: int = 64,
) -> MemoryBreakdown:
    """The fp32 memory model of one training step (see the module docstring).

    Args:
        profile: the recorded ops.
        active: active weights of each sparse layer (module name); the layers listed are stored
            sparse (bitmask + values), the others dense.
        frozen_blocks: leading blocks run under no_grad.
        batch_size: samples per step (SpFDE's figure: 64).
    """
    active = active or {}
    trainable, needs_ig, requires = profile.grad_flow(frozen_blocks)
    numel = {0: profile.input_numel, **{op.output: op.out_numel for op in profile.ops}}
    weights = index = weight_grads = 0
    saved: set[int] = set()
    grad_peak = 0
    for op in profile.ops:
        t, g = trainable[op.index], needs_ig[op.index]
        if op.kind in ("conv", "linear"):
            values = active.get(op.module, op.weight_numel) + op.bias_numel
            weights += values
            if op.module in active:
                index += -(-op.weight_numel // 8)
            if t:
                weight_grads += values
                saved.add(op.inputs[0])
        elif op.kind == "bn":
            weights += 4 * op.weight_numel  # gamma, beta, running mean, running var
            if t:
                weight_grads += 2 * op.weight_numel
            if t or g:
                saved.add(op.inputs[0])
        elif op.kind == "relu" and g:
            saved.add(op.output)
        elif op.kind == "maxpool" and g:
            saved.add(op.inputs[0])
        if requires[op.output]:
            grad_peak = max(grad_peak, op.out_numel + (op.in_numel if g else 0))
    activations = sum(numel[v] for v in saved)
    return MemoryBreakdown(
        weights=weights * BYTES_PER_VALUE,
        weight_index=index,
        activations=activations * batch_size * BYTES_PER_VALUE,
        weight_grads=weight_grads * BYTES_PER_VALUE,
        activation_grads=grad_peak * batch_size * BYTES_PER_VALUE,
    )


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def measured_peak(device: torch.device) -> dict[str, int | str | None]:
    """Measured peak memory: CPU peak RSS of the process, and CUDA peak allocated bytes on a GPU.

    ``cuda_peak_allocated_bytes`` is ``torch.cuda.max_memory_allocated`` since the last
    ``reset_peak_memory_stats`` (the meter resets it when training starts); None on CPU runs.
    """
    cuda = None
    if device.type == "cuda" and torch.cuda.is_available():
        cuda = int(torch.cuda.max_memory_allocated(device))
    return {"device": device.type, "cpu_peak_rss_bytes": peak_rss_bytes(), "cuda_peak_allocated_bytes": cuda}
