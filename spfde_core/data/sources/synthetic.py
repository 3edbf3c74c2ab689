"""Deterministic, learnable CIFAR-shaped images for smoke tests (no files needed)."""

from __future__ import annotations

import numpy as np

from .base import SourceData

DEFAULTS = {"num_train": 1000, "num_test": 200, "num_classes": 10, "image_size": 32, "seed": 0}


def _make_split(
    rng: np.random.Generator, colours: np.ndarray, patterns: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    num_classes = colours.shape[0]
    # Balanced labels in a shuffled order.
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    noise = rng.normal(0.0, 0.12, size=(n, *patterns.shape[1:], 3)).astype(np.float32)
    pixels = 0.5 + colours[labels][:, None, None, :] + patterns[labels][..., None] + noise
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), labels


def make_synthetic(
    num_train: int = 1000,
    num_test: int = 200,
    num_classes: int = 10,
    image_size: int = 32,
    seed: int = 0,
) -> SourceData:
    """Generate a dataset whose class shows in a mean colour shift and a stripe pattern, plus noise.

    The signal is strong enough that a small model beats chance within one epoch, while the
    per-pixel noise keeps the task from being trivial. Output is a pure function of the arguments.

    Args:
        num_train: training samples.
        num_test: test samples.
        num_classes: classes (>= 2).
        image_size: side of the square RGB images.
        seed: seed of the ``numpy.random.Generator``.

    Returns:
        ``SourceData`` with class names ``class_0`` ... and path describing the parameters.
    """
    if num_classes < 2 or num_train < 1 or num_test < 1 or image_size < 1:
        raise ValueError(
            f"synthetic needs num_classes >= 2 and positive sizes, got num_train={num_train}, "
            f"num_test={num_test}, num_classes={num_classes}, image_size={image_size}"
        )
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-0.15, 0.15, size=(num_classes, 3)).astype(np.float32)
    # Class-specific oriented stripes: angle and frequency differ by class.
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    angles = rng.uniform(0, np.pi, size=num_classes)
    freqs = rng.uniform(1.0, 4.0, size=num_classes)
    phase = (np.cos(angles)[:, None, None] * xx + np.sin(angles)[:, None, None] * yy) * freqs[:, None, None]
    patterns = (0.15 * np.sin(2 * np.pi * phase)).astype(np.float32)
    train_images, train_labels = _make_split(rng, colours, patterns, num_train)
    test_images, test_labels = _make_split(rng, colours, patterns, num_test)
    return SourceData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=[f"class_{i}" for i in range(num_classes)],
        kind="synthetic",
        path=(
            f"num_train={num_train},num_test={num_test},num_classes={num_classes},image_size={image_size},seed={seed}"
        ),
    )
