"""The mask set: one bool mask per sparse layer, stored as the layer's ``weight_mask`` buffer.

Because the masks are module buffers they move with ``model.to(device)`` and are saved in
``model.state_dict()``, so every checkpoint holds them and a resumed run continues with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MASK_BUFFER = "weight_mask"


@dataclass
class SparseLayer:
    name: str
    module: nn.Module
    target: float
    """The layer's current target sparsity (methods that reallocate change it)."""
    block: int = 0
    """Index of the model block holding the layer (freezing stops mask updates per block)."""

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def mask(self) -> torch.Tensor:
        return getattr(self.module, MASK_BUFFER)

    @mask.setter
    def mask(self, value: torch.Tensor) -> None:
        if value.shape != self.weight.shape or value.dtype != torch.bool:
            raise ValueError(f"{self.name}: mask must be bool of shape {tuple(self.weight.shape)}")
        self.mask.copy_(value)


class MaskSet:
    """The sparse layers of a model with their masks; applies masks to weights, gradients and momentum."""

    def __init__(
        self, modules: dict[str, nn.Module], targets: dict[str, float], blocks: dict[str, int] | None = None
    ) -> None:
        self.layers: list[SparseLayer] = []
        for name, target in targets.items():
            module = modules[name]
            if not hasattr(module, MASK_BUFFER):
                module.register_buffer(MASK_BUFFER, torch.ones_like(module.weight, dtype=torch.bool))
            self.layers.append(SparseLayer(name, module, target, (blocks or {}).get(name, 0)))

    def subset(self, first_block: int) -> MaskSet:
        """A view holding only the layers in blocks ``>= first_block`` (the trainable, unfrozen ones)."""
        view = MaskSet.__new__(MaskSet)
        view.layers = [layer for layer in self.layers if layer.block >= first_block]
        return view

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        """w <- w * m: pruned weights are exactly zero (and regrown ones start at zero)."""
        for layer in self.layers:
            layer.weight.mul_(layer.mask)

    @torch.no_grad()
    def apply_to_momentum(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the SGD momentum of inactive weights (sparse_learning / RigL convention)."""
        for layer in self.layers:
            buffer = optimizer.state.get(layer.weight, {}).get("momentum_buffer")
            if buffer is not None:
                buffer.mul_(layer.mask)

    def active_counts(self) -> dict[str, int]:
        return {layer.name: int(layer.mask.sum()) for layer in self.layers}

    def sizes(self) -> dict[str, int]:
        return {layer.name: layer.mask.numel() for layer in self.layers}

    def densities(self) -> dict[str, float]:
        return {name: count / self.sizes()[name] for name, count in self.active_counts().items()}

    def global_density(self) -> float:
        return sum(self.active_counts().values()) / sum(self.sizes().values())
