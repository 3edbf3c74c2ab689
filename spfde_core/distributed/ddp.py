"""Wrapping the model in DistributedDataParallel, and the record's ``distributed`` block."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from spfde_core.distributed.context import DistContext


def find_unused(cfg: Any) -> bool:
    """Frozen blocks run under ``no_grad`` and get no gradients: DDP must then look for unused
    parameters (one autograd-graph walk per step), which also keeps their ``.grad`` None as in a
    single-process run (so SGD's weight decay and momentum leave a frozen block untouched)."""
    return cfg.freezing.name != "none"


def wrap(model: nn.Module, ctx: DistContext, device: torch.device, cfg: Any) -> DistributedDataParallel:
    """DDP around ``model`` (the unwrapped model stays ``state.model``: checkpoints keep plain keys).

    ``broadcast_buffers=False``: masks and BN running statistics are computed identically on every
    rank (SyncBatchNorm2d, seeded mask decisions), and broadcasting rank 0's copy every step would
    both cost bandwidth and hide a divergence that ``RankConsistency`` is there to catch.
    """
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
        find_unused_parameters=find_unused(cfg),
    )


def distributed_block(ctx: DistContext, cfg: Any, sync_bn: int) -> dict[str, Any]:
    """The run record's ``distributed`` block (present only in runs with more than one process)."""
    return {
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "global_batch_size": int(cfg.train.batch_size),
        "partition": "each global batch of b split in contiguous rank pieces [r*b//W, (r+1)*b//W)",
        "gradient_sync": "DistributedDataParallel (all-reduce mean during backward), loss = sum * W / b",
        "find_unused_parameters": find_unused(cfg),
        "sync_batchnorm_layers": sync_bn,
        "doc": "docs/distributed.md",
    }
