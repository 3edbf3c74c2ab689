"""The structure every model in the zoo exposes: ordered freezable blocks and prunable layers.

Freezing and sparsity never special-case a model: freezing works on ``model.blocks`` (front to
back, SpFDE Alg. 1), sparsity on ``model.prunable_layers()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PrunableLayer:
    """A conv or linear weight that a sparsity method may mask.

    Attributes:
        name: dotted module name, e.g. ``layer1.0.conv1`` (MEST's profile names for CIFAR ResNets).
        module: the ``nn.Conv2d`` or ``nn.Linear`` owning ``weight``.
        block: index of the freezable block holding the layer.
        sparse_by_default: the source paper's convention (e.g. MEST keeps the stem conv, the 1x1
            shortcut convs and the classifier dense); sparsity configs may override it.
    """

    name: str
    module: nn.Module
    block: int
    sparse_by_default: bool

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight


class BlockModel(nn.Module):
    """A network written as an ordered list of blocks (stem, residual blocks, head).

    ``num_frozen_blocks = k`` makes the forward pass run blocks ``[0, k)`` under ``torch.no_grad``:
    no activations are kept for them and no weight or input gradients are computed, so a frozen
    prefix saves real backward work, not just optimizer updates (SpFDE Sec. 4.2).

    Frozen blocks also stay in eval mode while the rest trains (``train()`` below): their BN layers
    normalise with, and no longer update, their running statistics, so a frozen block is
    bit-identical from its freezing on, buffers included. (SpFDE does not say what it did; this is
    our documented choice, the one that makes "frozen" mean frozen.)
    """

    def __init__(self, blocks: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.block_names: list[str] = [name for name, _ in blocks]
        self.blocks = nn.ModuleList(module for _, module in blocks)
        self.num_frozen_blocks = 0

    def forward(self, x: torch.Tensor, start_block: int = 0) -> torch.Tensor:
        """``start_block = s``: ``x`` is already the output of blocks ``[0, s)`` (the feature cache's maps)."""
        k = self.num_frozen_blocks
        if k > start_block:
            with torch.no_grad():
                for block in self.blocks[start_block:k]:
                    x = block(x)
        for block in self.blocks[max(k, start_block) :]:
            x = block(x)
        return x

    def train(self, mode: bool = True) -> BlockModel:
        super().train(mode)
        if mode:
            for block in self.blocks[: self.num_frozen_blocks]:
                block.eval()
        return self

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        return list(zip(self.block_names, self.blocks, strict=True))

    def prunable_layers(self) -> list[PrunableLayer]:
        """Every conv and linear weight in block order; which stay dense is model-specific."""
        layers = []
        for index, (block_name, block) in enumerate(self.named_blocks()):
            for sub_name, module in block.named_modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    name = f"{block_name}.{sub_name}" if sub_name else block_name
                    layers.append(PrunableLayer(name, module, index, self.sparse_by_default(name, module)))
        return layers

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        """The source paper's convention for whether a layer is sparse; overridden per family."""
        raise NotImplementedError


def conv_bn_relu(in_channels: int, out_channels: int, inplace: bool = True) -> OrderedDict[str, nn.Module]:
    """``conv`` (3x3, stride 1, no bias), ``bn``, ``relu``: a CIFAR stem or a VGG unit, built in this order."""
    return OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(inplace=inplace),
    )


def classifier_head(pool: nn.Module, in_channels: int, num_classes: int) -> nn.Sequential:
    """The ``head`` block: ``pool``, ``flatten``, and the linear classifier ``fc``."""
    return nn.Sequential(OrderedDict(pool=pool, flatten=nn.Flatten(1), fc=nn.Linear(in_channels, num_classes)))
