"""Types shared by every data source and loader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

import torch


class Batch(NamedTuple):
    """One training or evaluation batch.

    Attributes:
        images: (B, C, H, W) float32, normalised, on the loader's device (channels_last if asked).
        labels: (B,) int64.
        indices: (B,) int64 positions of the samples in the original split, so per-example
            statistics (forgetting events, losses) can be keyed by sample (data sieving).
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


class Loader(Protocol):
    """What the trainer needs from a loader; both the in-memory and the streaming loader fit it."""

    num_classes: int

    def set_epoch(self, epoch: int) -> None:
        """Fix the order and augmentation of the next pass: a pure function of (seed, epoch)."""

    def set_active(self, indices: torch.Tensor | None) -> None:
        """Restrict passes to these original sample indices (None = all). Data sieving's hook."""

    @property
    def dataset_size(self) -> int:
        """Samples in the whole split, whatever subset is active."""

    @property
    def num_samples(self) -> int:
        """Samples in one pass over the active set."""

    def __len__(self) -> int:
        """Batches in one pass."""

    def __iter__(self) -> Iterator[Batch]: ...
