"""How a global batch is split over ranks and put back together after the step.

Partition (the contract ``TensorLoader.iter_shard`` implements): the loader's pass is the same on
every rank and the same as a single-process run's (a function of seed, epoch and the active set);
each of its batches, of b samples, is cut into ``world_size`` contiguous pieces, rank r taking
positions ``[r*b//W, (r+1)*b//W)``. The pieces are disjoint and their union, in rank order, is the
batch, for the last partial batch too (a piece may be empty when b < W). So every active sample is
trained on exactly once per epoch, by exactly one rank, with the augmentation it would get in a
single-process run.

After the optimizer step the per-sample outputs (indices, losses, correctness, logits) are
all-gathered in rank order, so every rank's callbacks (sieving statistics, the cost meter, probes)
see the whole global batch, identical on every rank and in the single-process order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from spfde_core.train.callbacks import StepOutput


def shard_bounds(batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of rank ``rank``'s piece of a global batch of ``batch`` samples."""
    return batch * rank // world_size, batch * (rank + 1) // world_size


def shard_sizes(batch: int, world_size: int) -> list[int]:
    return [hi - lo for lo, hi in (shard_bounds(batch, r, world_size) for r in range(world_size))]


def global_batch_size(loader, index: int) -> int:  # noqa: ANN001 - any Loader
    """Samples of the ``index``-th global batch of the current pass (drop_last respected)."""
    n, b = int(loader.num_samples), int(loader.batch_size)
    stop = (n // b) * b if getattr(loader, "drop_last", False) else n
    return max(0, min(b, stop - index * b))


def _gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather (n_r, ...) tensors of known per-rank sizes into (sum n_r, ...), in rank order."""
    width = max(sizes)
    padded = local.new_zeros((width, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(pieces, padded)  # list form: supported by gloo and NCCL alike
    return torch.cat([piece[:n] for piece, n in zip(pieces, sizes, strict=True)])


def gather_step(step: StepOutput, sizes: list[int]) -> StepOutput:
    """The global batch's ``StepOutput`` from every rank's piece (two collectives: ints, floats)."""
    ints = torch.stack([step.indices.to(torch.int64), step.correct.to(torch.int64)], dim=1)
    floats = torch.cat([step.losses.float()[:, None], step.logits.float()], dim=1)
    ints, floats = _gather_rows(ints, sizes), _gather_rows(floats, sizes)
    return StepOutput(ints[:, 0], floats[:, 0].contiguous(), ints[:, 1].bool(), floats[:, 1:].contiguous())


def all_reduce_sums(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sum scalar tensors over ranks (one collective; float64 so counts stay exact)."""
    device = values[0].device
    packed = torch.stack([torch.as_tensor(v).to(device, torch.float64).reshape(()) for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())
