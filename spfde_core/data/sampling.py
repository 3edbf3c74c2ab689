"""What the loaders share: the epoch's pass over the active set, per-epoch generators, normalisation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .types import Batch


class EpochPasses:
    """The ``Loader`` protocol's bookkeeping, the same for the in-memory and the streaming loader.

    A loader sets ``batch_size``, ``drop_last``, ``channels_last``, ``_epoch``, ``_active``, ``_scale``
    and ``_shift`` (``normalizer``), and defines ``dataset_size`` and ``_batches(shard)``: the pass of
    the current epoch over the active set, whole (``shard`` None) or one rank's piece of every batch.
    """

    batch_size: int
    drop_last: bool
    channels_last: bool
    _epoch: int
    _active: torch.Tensor | None  # sorted CPU int64, None = all samples
    _scale: torch.Tensor
    _shift: torch.Tensor

    @property
    def dataset_size(self) -> int:
        raise NotImplementedError

    def _batches(self, shard: tuple[int, int] | None) -> Iterator[Batch]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next pass uses."""
        self._epoch = int(epoch)

    def set_active(self, indices: torch.Tensor | None) -> None:
        """Restrict passes to these original sample indices (None = all); validated and sorted."""
        self._active = None if indices is None else validate_active(indices, self.dataset_size)

    @property
    def num_samples(self) -> int:
        """Samples in one pass over the active set (a dropped last batch still counts)."""
        return self.dataset_size if self._active is None else int(self._active.numel())

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[Batch]:
        return self._batches(None)

    def iter_shard(self, rank: int, world_size: int) -> Iterator[Batch]:
        """Rank ``rank``'s piece of every batch of the pass ``__iter__`` makes (distributed training).

        Each batch of b samples is cut into ``world_size`` contiguous pieces, piece r = positions
        ``[r*b//W, (r+1)*b//W)`` (``spfde_core.distributed.step.shard_bounds``): disjoint, their union
        in rank order is the batch (last partial batch included; a piece may be empty if b < W), and
        each sample keeps the augmentation draw of its position in the pass.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        return self._batches((rank, world_size))

    def _normalized(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``images`` on the device as float32 ``(x / 255 - mean) / std``, channels_last if asked."""
        x = images.float().mul_(self._scale).add_(self._shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded by a hash-combination of ``(seed, epoch)``.

    ``SeedSequence`` mixes the pair properly, so nearby (seed, epoch) pairs give unrelated streams
    and ``(0, 1_000_003)`` does not collide with ``(1, 0)`` as ``seed * k + epoch`` would.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF]).generate_state(1, np.uint64)
    return torch.Generator(device="cpu").manual_seed(int(state[0]) & ((1 << 63) - 1))


def validate_active(indices: torch.Tensor | Sequence[int] | np.ndarray, num_total: int) -> torch.Tensor:
    """Check an active set and return it as a sorted CPU int64 tensor.

    Sorting makes a pass a function of the *set* of active samples, not of the order the caller
    happened to list them in.

    Raises:
        ValueError: not 1-D integers, empty, out of ``[0, num_total)``, or with duplicates.
    """
    idx = torch.as_tensor(indices).detach().cpu()
    if idx.dtype == torch.bool:
        raise ValueError("active indices must be integer sample indices, not a boolean mask (use mask.nonzero())")
    if idx.ndim != 1 or idx.is_floating_point() or idx.is_complex():
        raise ValueError(f"active indices must be a 1-D integer tensor, got dtype {idx.dtype} shape {tuple(idx.shape)}")
    if idx.numel() == 0:
        raise ValueError("active indices must not be empty")
    idx = idx.to(torch.int64)
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= num_total:
        raise ValueError(f"active indices must lie in [0, {num_total}), got min {low} and max {high}")
    idx = torch.sort(idx).values
    if idx.numel() > 1 and bool((idx[1:] == idx[:-1]).any()):
        dupes = torch.unique(idx[1:][idx[1:] == idx[:-1]])[:10].tolist()
        raise ValueError(f"active indices must be unique; repeated: {dupes}")
    return idx


def spread(indices: torch.Tensor, count: int) -> torch.Tensor:
    """``min(count, len(indices))`` of ``indices`` evenly spaced (element ``i * len // count``), in order.

    For fixed probe sets (CKA, the feature cache's sensitivity probe): prepared splits are stored class by class,
    so the first ``count`` samples would be one class; evenly spaced ones cover every class in proportion.
    """
    n = int(indices.numel())
    m = min(int(count), n)
    return indices[(torch.arange(m) * n) // m] if m else indices[:0]


def num_batches(num_samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches in one pass: floor with ``drop_last``, ceil without."""
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)


def normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)``, shape (1, 3, 1, 1), with ``uint8 * scale + shift == (x / 255 - mean) / std``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    if mean_t.numel() != 3 or std_t.numel() != 3 or bool((std_t <= 0).any()):
        raise ValueError(f"mean and std need 3 values each, std positive; got mean={mean}, std={std}")
    return (1.0 / (255.0 * std_t)).to(device), (-mean_t / std_t).to(device)
