"""Batch normalisation over the global batch, so a distributed step normalises as one process would.

Each rank sees only its shard of the global batch; plain BN would normalise with per-shard
statistics (and keep per-rank running statistics). ``SyncBatchNorm2d`` computes the batch mean and
variance over every rank's shard in training mode:

- on CUDA through PyTorch's own ``SyncBatchNorm`` kernels (``torch.nn.SyncBatchNorm``'s function);
- on CPU, where PyTorch's ``SyncBatchNorm`` refuses to run, with differentiable all-reduces
  (``torch.distributed.nn.functional.all_reduce``) of per-channel sums: two-pass mean then variance,
  so the numbers are those of the single-process ``batch_norm`` up to float rounding, and autograd
  gives the gradient of the global-batch normalisation.

It subclasses ``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys; every
``isinstance(m, nn.BatchNorm2d)`` check, the cost profiler's included, still holds), so a checkpoint
of a distributed run loads into a single-process model and back. In eval mode, outside a process
group, or on meta tensors (the cost profiler) it is exactly ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _global_sum(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t, op=dist.ReduceOp.SUM)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are those of the global batch (module docstring)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        sync = (
            self.training
            and input.device.type != "meta"
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        )
        if not sync:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        if input.device.type == "cuda":
            from torch.nn.modules._functions import SyncBatchNorm as SyncBNFunction

            return SyncBNFunction.apply(
                input,
                self.weight,
                self.bias,
                self.running_mean if self.track_running_stats else None,
                self.running_var if self.track_running_stats else None,
                self.eps,
                momentum,
                dist.group.WORLD,
                dist.get_world_size(),
            )
        return self._cpu_forward(input, momentum)

    def _cpu_forward(self, x: torch.Tensor, momentum: float) -> torch.Tensor:
        dims = (0, 2, 3)
        xf = x.float()
        count = _global_sum(torch.tensor([float(x.numel() // x.shape[1])], device=x.device)).detach()
        mean = _global_sum(xf.sum(dims)) / count
        centered = xf - mean[None, :, None, None]
        var = _global_sum(centered.square().sum(dims)) / count
        y = centered * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                n = float(count)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return y.to(x.dtype)


def convert_batchnorm(model: nn.Module) -> int:
    """Replace every ``nn.BatchNorm2d`` in ``model`` by a ``SyncBatchNorm2d`` holding the *same* parameter
    and buffer tensors (so optimizer groups and references stay valid); returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                sync = SyncBatchNorm2d.__new__(SyncBatchNorm2d)
                sync.__dict__ = child.__dict__  # same parameters, buffers, hooks and flags
                setattr(parent, name, sync)
                replaced += 1
    return replaced
