"""Helpers shared by the model-zoo tests (a plainly named module, not a conftest, so that other
test folders' conftests can never shadow it)."""

from __future__ import annotations

import torch

from spfde_core.models import MODELS

CIFAR_MODELS = ["resnet20", "resnet32", "resnet56", "resnet32_w2", "vgg19", "resnet18_cifar"]
IMAGENET_MODELS = ["resnet18", "resnet50"]
ALL_MODELS = CIFAR_MODELS + IMAGENET_MODELS


def input_batch(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random batch at the resolution the model is meant for."""
    size = MODELS.get(name).input_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
