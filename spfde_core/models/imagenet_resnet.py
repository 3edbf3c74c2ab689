"""torchvision's ImageNet ResNet-18/50 (He et al. 2016) re-expressed as a ``BlockModel``.

The torchvision modules themselves are reused (no copied code) and torchvision's initialisation is
kept. Blocks (freezing order): ``stem`` (conv1, bn1, relu, maxpool), ``layerS.B`` for every
BasicBlock/Bottleneck of layer1..layer4, ``head`` (avgpool, flatten, fc).
Prunable layer names: ``stem.conv1``, ``layerS.B.conv{1,2[,3]}``, ``layerS.0.downsample.0``,
``head.fc``. Sparse by default: every conv except ``stem.conv1`` (SpFDE Sec. 5: "uniform ...
across all conv layers, with only the first layer dense"); fc dense.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn
from torchvision.models import resnet

from spfde_core.models.base import BlockModel


class ImageNetResNet(BlockModel):
    """A torchvision ResNet cut into stem / residual blocks / head.

    Args:
        net: a torchvision ``ResNet``; its modules are moved into this model, not copied.
    """

    def __init__(self, net: resnet.ResNet) -> None:
        blocks: list[tuple[str, nn.Module]] = [
            (
                "stem",
                nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool)),
            )
        ]
        for stage in range(1, 5):
            layer: nn.Sequential = getattr(net, f"layer{stage}")
            blocks.extend((f"layer{stage}.{index}", block) for index, block in enumerate(layer))
        blocks.append(("head", nn.Sequential(OrderedDict(avgpool=net.avgpool, flatten=nn.Flatten(1), fc=net.fc))))
        super().__init__(blocks)

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        return isinstance(module, nn.Conv2d) and name != "stem.conv1"


def _build(factory: Callable[..., resnet.ResNet], num_classes: int) -> ImageNetResNet:
    return ImageNetResNet(factory(weights=None, num_classes=num_classes))


def resnet18(num_classes: int) -> ImageNetResNet:
    """torchvision ResNet-18 (He et al. 2016), random torchvision init."""
    return _build(resnet.resnet18, num_classes)


def resnet50(num_classes: int) -> ImageNetResNet:
    """torchvision ResNet-50 v1.5 (He et al. 2016; stride on the 3x3 conv), random torchvision init."""
    return _build(resnet.resnet50, num_classes)
