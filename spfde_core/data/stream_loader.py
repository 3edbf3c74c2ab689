"""``ImageFolderStreamLoader``: batches decoded from image files by ``DataLoader`` workers (ImageNet)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from .catalog import get_dataset_info
from .imagenet_index import ImageFolderIndex, load_index
from .sampling import EpochPasses, epoch_generator, normalizer
from .types import Batch


class _FileDataset(Dataset):
    """Decodes one file per ``(index, sample_seed)`` key. Stateless, so persistent workers stay valid."""

    def __init__(self, paths: list[str], labels: list[int], transform: v2.Transform, random: bool) -> None:
        self.paths = paths
        self.labels = labels
        self.transform = transform
        self.random = random

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, sample_seed = key
        with Image.open(self.paths[index]) as img:
            img = img.convert("RGB")
        if self.random:
            # torchvision's random transforms draw from the global RNG; seeding it per sample (inside
            # fork_rng, so the caller's RNG is untouched) makes a sample's augmentation a function of
            # (seed, epoch, index) whatever worker decodes it and however many workers there are.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed)
                out = self.transform(img)
        else:
            out = self.transform(img)
        return out, self.labels[index], index


class _EpochBatches(Sampler):
    """Yields the batches of keys the loader set for the current pass; lives in the main process.

    A batch sampler rather than a sampler plus ``batch_size``: a distributed pass (``iter_shard``)
    yields this rank's piece of every global batch, whose size varies with the rank and the batch.
    """

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageFolderStreamLoader(EpochPasses):
    """Streaming loader over an ``index.json`` split, implementing the ``Loader`` protocol.

    Train: ``RandomResizedCrop(image_size)`` + horizontal flip; eval: ``Resize(resize_size)`` +
    ``CenterCrop(image_size)``. Workers return uint8 crops; conversion to float, normalisation and
    the optional channels_last layout happen batched on ``device``. Order (a permutation of the active
    set in train mode, ascending in eval mode) and augmentation are functions of (seed, epoch).
    In a distributed pass (``iter_shard``) each rank decodes only its own piece.
    """

    def __init__(
        self,
        index: ImageFolderIndex | str | Path,
        split: str,
        *,
        batch_size: int,
        train: bool,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
        image_size: int = 224,
        resize_size: int | None = None,
        num_workers: int = 4,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        channels_last: bool = False,
        root: str | Path | None = None,
    ) -> None:
        """Build the loader.

        Args:
            index: a loaded index or the folder holding ``index.json``.
            split: ``train`` or ``test`` (``val`` is accepted as a name for ``test``).
            batch_size: samples per batch.
            train: random crops and flips, shuffled (True) or deterministic eval transform (False).
            mean: per-channel mean of [0, 1] pixels; default: the catalog entry of the index's name.
            std: per-channel std; default as for ``mean``.
            seed: base seed.
            image_size: output side (224 for ImageNet; tests use small values).
            resize_size: eval resize side; default ``round(image_size * 256 / 224)`` (256 for 224).
            num_workers: ``DataLoader`` worker processes (0 decodes in the calling process).
            device: where batches are produced.
            drop_last: drop a final incomplete batch.
            channels_last: return images in ``torch.channels_last`` memory format.
            root: image tree to read from instead of the one recorded in the index (moved data).
        """
        if not isinstance(index, ImageFolderIndex):
            index = load_index(index)
        if split == "val" and "val" not in index.samples:
            split = "test"  # ImageNet calls its held-out split val; the index stores it as test
        if split not in index.samples:
            raise ValueError(f"unknown split {split!r}; the index has {sorted(index.samples)}")
        if mean is None or std is None:
            info = get_dataset_info(index.meta["name"])
            mean = info.mean if mean is None else mean
            std = info.std if std is None else std
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        base = Path(root) if root is not None else index.root
        items = index.samples[split]
        if resize_size is None:
            resize_size = round(image_size * 256 / 224)
        if train:
            transform = v2.Compose(
                [
                    v2.RandomResizedCrop(image_size, antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.PILToTensor(),
                ]
            )
        else:
            transform = v2.Compose(
                [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()]
            )
        self._dataset = _FileDataset([str(base / rel) for rel, _ in items], [lb for _, lb in items], transform, train)
        self._sampler = _EpochBatches()
        self._loader = DataLoader(
            self._dataset,
            batch_sampler=self._sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=torch.device(device).type == "cuda",
        )
        self.num_classes = index.num_classes
        self.image_size = image_size
        self.index = index
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.device = torch.device(device)
        self._scale, self._shift = normalizer(mean, std, self.device)
        self._epoch = 0
        self._active = None

    @property
    def meta(self) -> dict:
        """The parsed ``index.json`` (name, source, class names, content_sha256, ...)."""
        return self.index.meta

    @property
    def dataset_size(self) -> int:
        """Samples in the whole split, whatever subset is active."""
        return len(self._dataset)

    def _batches(self, shard: tuple[int, int] | None) -> Iterator[Batch]:
        active = torch.arange(len(self._dataset)) if self._active is None else self._active
        n = active.numel()
        if self.train:
            gen = epoch_generator(self.seed, self._epoch)
            order = active[torch.randperm(n, generator=gen)]
            seeds = torch.randint(0, 2**62, (n,), generator=gen)
        else:
            order, seeds = active, torch.zeros_like(active)
        keys = list(zip(order.tolist(), seeds.tolist(), strict=True))
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        pieces = [keys[start : min(start + self.batch_size, stop)] for start in range(0, stop, self.batch_size)]
        if shard is not None:  # distributed: this rank's piece of every global batch (iter_shard)
            rank, world = shard
            pieces = [p[len(p) * rank // world : len(p) * (rank + 1) // world] for p in pieces]
        # DataLoader cannot collate an empty batch: it gets the non-empty pieces, the empty ones
        # (b < W) are yielded here, in place, so every rank makes one step per global batch.
        self._sampler.batches = [p for p in pieces if p]
        decoded = iter(self._loader)
        for piece in pieces:
            if not piece:
                yield self._empty()
                continue
            images, labels, indices = next(decoded)
            x = self._normalized(images.to(self.device, non_blocking=True))
            yield Batch(images=x, labels=labels.to(self.device), indices=indices.to(self.device))

    def _empty(self) -> Batch:
        """A batch of no samples, shaped like the others (a rank's piece when b < W)."""
        x = torch.empty(0, 3, self.image_size, self.image_size, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        none = torch.empty(0, dtype=torch.int64, device=self.device)
        return Batch(images=x, labels=none, indices=none.clone())
