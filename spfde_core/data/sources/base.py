"""The in-memory form every source produces before it is written as a prepared dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SourceData:
    """Decoded train and test splits plus provenance.

    Attributes:
        train_images: (N, H, W, 3) uint8.
        train_labels: (N,) int64, values in ``[0, len(class_names))``.
        test_images: (M, H, W, 3) uint8.
        test_labels: (M,) int64.
        class_names: names in label order.
        kind: the source kind (``imagefolder``, ``torchvision``, ``hf``, ``synthetic``).
        path: where the data came from (a path, hub id or parameter string), recorded in meta.json.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    kind: str
    path: str

    def __post_init__(self) -> None:
        # Normalise once here so the hash and the writer never see another dtype or byte order.
        for split in ("train", "test"):
            images = np.ascontiguousarray(getattr(self, f"{split}_images"), dtype=np.uint8)
            labels = np.ascontiguousarray(getattr(self, f"{split}_labels"), dtype="<i8")
            if images.ndim != 4 or images.shape[3] != 3:
                raise ValueError(f"{split} images must be (N, H, W, 3) uint8, got shape {images.shape}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"{split} labels shape {labels.shape} does not match {images.shape[0]} images")
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise ValueError(f"{split} labels fall outside [0, {len(self.class_names)})")
            setattr(self, f"{split}_images", images)
            setattr(self, f"{split}_labels", labels)
        self.class_names = [str(c) for c in self.class_names]
