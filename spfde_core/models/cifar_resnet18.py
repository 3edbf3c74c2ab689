"""ResNet-18 for 32x32 inputs as continual-learning code uses it (mammoth / SparCL ``models/resnet18_cifar.py``).

He et al.'s ResNet-18 (BasicBlock x [2, 2, 2, 2], widths nf, 2nf, 4nf, 8nf with nf = 64) with a CIFAR stem:
one 3x3 stride-1 conv + BN + ReLU, no max-pool; global average pooling and a linear classifier. Shortcuts are a
1x1 strided conv + BN where the stride or width changes (option B), else the identity; PyTorch's default init
(the SparCL model sets none). ``width`` scales nf (1/4 width: nf = 16, for CPU budgets).

Block names (freezing order): ``stem``, ``layer1.0`` ... ``layer4.1``, ``head``. Prunable layers keep SparCL's
profile names (``layer1.0.conv1`` ... ``layer4.1.conv2``): those 16 3x3 convs are the sparse ones by default;
the stem conv, the 1x1 shortcuts and the classifier stay dense (``profiles/resnet18_cifar/irr/*.yaml``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from spfde_core.models.base import BlockModel
from spfde_core.models.cifar_resnet import BasicBlock


class CifarResNet18(BlockModel):
    """ResNet-18, CIFAR stem (module docstring)."""

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        if width <= 0:
            raise ValueError(f"width multiplier must be positive, got {width}")
        nf = max(1, round(64 * width))
        stem = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(3, nf, 3, padding=1, bias=False), bn=nn.BatchNorm2d(nf), relu=nn.ReLU())
        )
        blocks: list[tuple[str, nn.Module]] = [("stem", stem)]
        in_channels = nf
        for stage, mult in enumerate((1, 2, 4, 8), start=1):
            for index in range(2):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append((f"layer{stage}.{index}", BasicBlock(in_channels, nf * mult, stride)))
                in_channels = nf * mult
        head = nn.Sequential(
            OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(in_channels, num_classes))
        )
        blocks.append(("head", head))
        super().__init__(blocks)
        self.width = width

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        # SparCL's profile lists only layerS.B.conv1/conv2; stem, shortcuts and classifier stay dense.
        return name.startswith("layer") and name.endswith((".conv1", ".conv2"))


def resnet18_cifar(num_classes: int, width: float = 1.0) -> CifarResNet18:
    """ResNet-18 with a 3x3 CIFAR stem (mammoth / SparCL), nf = 64 x width."""
    return CifarResNet18(num_classes, width)
