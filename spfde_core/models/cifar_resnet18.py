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

from torch import nn

from spfde_core.models.base import BlockModel, classifier_head, conv_bn_relu
from spfde_core.models.cifar_resnet import residual_stages


class CifarResNet18(BlockModel):
    """ResNet-18, CIFAR stem (module docstring)."""

    def __init__(self, num_classes: int, width: float = 1.0) -> None:
        if width <= 0:
            raise ValueError(f"width multiplier must be positive, got {width}")
        nf = max(1, round(64 * width))
        super().__init__(
            [
                ("stem", nn.Sequential(conv_bn_relu(3, nf, inplace=False))),
                *residual_stages(nf, [nf * mult for mult in (1, 2, 4, 8)], 2),
                ("head", classifier_head(nn.AdaptiveAvgPool2d(1), nf * 8, num_classes)),
            ]
        )
        self.width = width

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        # SparCL's profile lists only layerS.B.conv1/conv2; stem, shortcuts and classifier stay dense.
        return name.startswith("layer") and name.endswith((".conv1", ".conv2"))


def resnet18_cifar(num_classes: int, width: float = 1.0) -> CifarResNet18:
    """ResNet-18 with a 3x3 CIFAR stem (mammoth / SparCL), nf = 64 x width."""
    return CifarResNet18(num_classes, width)
