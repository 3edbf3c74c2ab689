"""CIFAR ResNets of depth 6n+2 (He et al. 2016, Sec. 4.2) in the MEST/GraSP variant.

``resnet32_w2`` (width 2: stage widths 32/64/128) is the exact model of MEST's
``models/resnet32_cifar10_grasp.py`` (reference notes Sec. 1.1), which SpFDE also uses.

Block names (freezing order): ``stem``, ``layer1.0`` ... ``layer3.{n-1}``, ``head``.
Prunable layer names and their MEST equivalents:

* ``stem.conv`` (MEST ``conv1``), dense;
* ``layerS.B.conv1`` / ``layerS.B.conv2``: the 3x3 block convs, identical to MEST's names, the only
  layers in MEST's sparsity profiles, so the only ones sparse by default;
* ``layerS.0.shortcut.0`` (MEST ``downsample.0``) with BN ``layerS.0.shortcut.1`` (MEST ``bn3``),
  only in ``layer2.0`` and ``layer3.0``; dense;
* ``head.fc`` (MEST ``fc``/``linear``), dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spfde_core.models.base import BlockModel, classifier_head, conv_bn_relu
from spfde_core.models.init import mest_init_

BASE_WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, then ReLU.

    The shortcut is a strided 1x1 conv + BN wherever stride or width changes (He et al.'s option B,
    as in MEST/GraSP), else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def residual_stages(in_channels: int, widths: Sequence[int], blocks_per_stage: int) -> list[tuple[str, nn.Module]]:
    """Blocks ``layerS.B``: per stage S (from 1) ``blocks_per_stage`` BasicBlocks, the first of S > 1 strided."""
    blocks: list[tuple[str, nn.Module]] = []
    for stage, out_channels in enumerate(widths, start=1):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 1 and index == 0 else 1
            blocks.append((f"layer{stage}.{index}", BasicBlock(in_channels, out_channels, stride)))
            in_channels = out_channels
    return blocks


def stage_widths(width: float) -> tuple[int, int, int]:
    """Channel widths of the three stages for a width multiplier (16/32/64 at width 1)."""
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    widths = tuple(round(base * width) for base in BASE_WIDTHS)
    if min(widths) < 1:
        raise ValueError(f"width multiplier {width} leaves a stage with no channels")
    return widths  # type: ignore[return-value]


class CifarResNet(BlockModel):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, Sec. 4.2; MEST/GraSP init and shortcuts).

    Args:
        depth: 6n+2, e.g. 20, 32, 56.
        num_classes: classifier outputs.
        width: multiplier on the stage widths 16/32/64 (2 gives MEST's 32/64/128).
    """

    def __init__(self, depth: int, num_classes: int, width: float = 1.0) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        widths = stage_widths(width)
        super().__init__(
            [
                ("stem", nn.Sequential(conv_bn_relu(3, widths[0]))),
                *residual_stages(widths[0], widths, n),
                ("head", classifier_head(nn.AdaptiveAvgPool2d(1), widths[-1], num_classes)),
            ]
        )
        self.depth = depth
        self.width = width
        mest_init_(self)

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        # MEST's profiles list only layerX.Y.conv1/conv2; stem, shortcuts and fc stay dense.
        return name.startswith("layer") and name.endswith((".conv1", ".conv2"))


def resnet20(num_classes: int, width: float = 1.0) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016, Sec. 4.2), MEST/GraSP shortcuts and init."""
    return CifarResNet(20, num_classes, width)


def resnet32(num_classes: int, width: float = 1.0) -> CifarResNet:
    """ResNet-32 for CIFAR (He et al. 2016, Sec. 4.2); ``width=2`` is MEST/GraSP's model."""
    return CifarResNet(32, num_classes, width)


def resnet56(num_classes: int, width: float = 1.0) -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016, Sec. 4.2), MEST/GraSP shortcuts and init."""
    return CifarResNet(56, num_classes, width)
