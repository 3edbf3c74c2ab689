"""Helpers shared by the loaders: per-epoch generators, active-set validation, batch counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


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
