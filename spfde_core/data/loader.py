"""``TensorLoader``: batches, with CIFAR augmentation, from a dataset held whole in (device) memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .catalog import get_dataset_info
from .prepared import PreparedDataset
from .sampling import EpochPasses, epoch_generator, normalizer
from .types import Batch


class TensorLoader(EpochPasses):
    """In-memory loader implementing the ``Loader`` protocol.

    Images are given as (N, H, W, 3) uint8 (the prepared format), converted once to (N, 3, H, W)
    and kept on ``device``. Train mode draws, per epoch, a permutation of the active indices and
    per-sample crop offsets and flips from a CPU generator seeded by ``(seed, epoch)``; the draws are
    then moved to ``device``, so batches are a pure function of (seed, epoch, active set) and the same
    on CPU and GPU. The augmentation matches torchvision's ``RandomCrop(H, padding=pad)`` (zero
    padding in uint8 pixel space) plus ``RandomHorizontalFlip(0.5)``, done as one batched gather.
    Eval mode yields the active indices in ascending order, unaugmented.

    Output images are float32 ``(x / 255 - mean) / std``, channels_last if asked.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        *,
        num_classes: int,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
        pad: int = 4,
    ) -> None:
        """Build the loader.

        Args:
            images: (N, H, W, 3) uint8.
            labels: (N,) integer labels in ``[0, num_classes)``.
            num_classes: number of classes.
            batch_size: samples per batch (> 0).
            mean: per-channel mean of [0, 1] pixels.
            std: per-channel std.
            train: shuffle and augment (True) or fixed order, no augmentation (False).
            seed: base seed; with the epoch it determines every random draw.
            device: where the data lives and batches are produced.
            drop_last: drop a final incomplete batch.
            channels_last: return images in ``torch.channels_last`` memory format.
            pad: zero padding before the random crop (train only; 0 disables cropping).
        """
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        if batch_size <= 0 or pad < 0:
            raise ValueError(f"batch_size must be positive and pad non-negative, got {batch_size} and {pad}")
        self.device = torch.device(device)
        self._images = images.permute(0, 3, 1, 2).contiguous().to(self.device)
        self._labels = labels.to(torch.int64).to(self.device)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.pad = pad
        self._scale, self._shift = normalizer(mean, std, self.device)
        self._epoch = 0
        self._active = None

    @classmethod
    def from_prepared(cls, prepared: PreparedDataset, split: str, **kwargs: Any) -> TensorLoader:
        """Build a loader over one split of a prepared dataset.

        ``num_classes`` defaults to the prepared one, ``mean``/``std`` to the catalog entry of the
        dataset's name, ``train`` to ``split == "train"``; ``batch_size`` must be given.
        """
        images, labels = prepared.split(split)
        if "mean" not in kwargs or "std" not in kwargs:
            info = get_dataset_info(prepared.name)
            kwargs.setdefault("mean", info.mean)
            kwargs.setdefault("std", info.std)
        kwargs.setdefault("num_classes", prepared.num_classes)
        kwargs.setdefault("train", split == "train")
        return cls(torch.from_numpy(images), torch.from_numpy(labels), **kwargs)

    @property
    def dataset_size(self) -> int:
        """Samples in the whole split, whatever subset is active."""
        return self._images.shape[0]

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64 labels of the whole split, by original sample index (on ``device``)."""
        return self._labels

    def make_batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """The samples ``indices`` as one batch, outside the epoch's pass (a rehearsal buffer's draw).

        With ``generator`` (a CPU generator) the batch gets this loader's train augmentation, drawn from it
        in the pass's order (crop dy, crop dx, flip); without one, no augmentation. Normalised like a pass.
        """
        idx = indices.to(self.device, torch.int64)
        x = self._images[idx]
        if generator is not None:
            n = idx.numel()
            dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator).to(self.device)
            dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator).to(self.device)
            flip = (torch.rand(n, generator=generator) < 0.5).to(self.device)
            x = self._augment(x, dy, dx, flip)
        return Batch(images=self._normalized(x), labels=self._labels[idx], indices=idx)

    def _augment(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        # Pad in uint8 pixel space with 0 (like torchvision Pad before ToTensor), then take every
        # sample's crop, mirrored or not, with a single gather.
        b, c, h, w = x.shape
        padded = F.pad(x, (self.pad, self.pad, self.pad, self.pad)) if self.pad else x
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = dy[:, None] + ar_h  # (B, H)
        cols = dx[:, None] + torch.where(flip[:, None], ar_w.flip(0), ar_w)  # (B, W)
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def epoch_draws(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """The current pass's (order, crop dy, crop dx, flip), CPU tensors in pass order; draws are None in eval mode.

        The one place the pass's randomness is drawn: the feature cache (spfde_core/freezing/feature_cache.py)
        reads it so cached batches follow the same order and augmentation draws.
        """
        active = torch.arange(self._images.shape[0]) if self._active is None else self._active
        n = active.numel()
        if not self.train:
            return active, None, None, None
        gen = epoch_generator(self.seed, self._epoch)
        order = active[torch.randperm(n, generator=gen)]
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        return order, dy, dx, flip

    def _batches(self, shard: tuple[int, int] | None) -> Iterator[Batch]:
        order, dy, dx, flip = self.epoch_draws()
        n = order.numel()
        if self.train:
            dy, dx, flip = (t.to(self.device) for t in (dy, dx, flip))
        order = order.to(self.device)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            if shard is not None:  # distributed: this rank's piece of the global batch (iter_shard)
                rank, world, b = *shard, end - start
                start, end = start + b * rank // world, start + b * (rank + 1) // world
            idx = order[start:end]
            x = self._images[idx]
            if self.train:
                x = self._augment(x, dy[start:end], dx[start:end], flip[start:end])
            yield Batch(images=self._normalized(x), labels=self._labels[idx], indices=idx)
