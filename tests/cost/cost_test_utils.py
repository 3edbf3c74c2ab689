"""A tiny three-block model whose costs are written out by hand in the tests."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from spfde_core.models.base import BlockModel

INPUT_SHAPE = (3, 8, 8)


class TinyNet(BlockModel):
    """stem: conv 3->4 (3x3, pad 1, no bias); body: conv 4->8 (3x3, pad 1) + BN + ReLU;
    head: global avg-pool, flatten, linear 8->2 with bias. Input 3x8x8."""

    def __init__(self) -> None:
        super().__init__(
            [
                ("stem", nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1, bias=False)))),
                (
                    "body",
                    nn.Sequential(
                        OrderedDict(
                            conv=nn.Conv2d(4, 8, 3, padding=1, bias=False),
                            bn=nn.BatchNorm2d(8),
                            relu=nn.ReLU(inplace=True),
                        )
                    ),
                ),
                (
                    "head",
                    nn.Sequential(OrderedDict(pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(8, 2))),
                ),
            ]
        )

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        return name == "body.conv"


def mask_body_conv(model: TinyNet, active: int = 72) -> None:
    """Give body.conv (288 weights) a weight_mask with ``active`` leading positions on."""
    conv = model.blocks[1].conv
    mask = torch.zeros(conv.weight.numel(), dtype=torch.bool)
    mask[:active] = True
    conv.register_buffer("weight_mask", mask.view_as(conv.weight))
