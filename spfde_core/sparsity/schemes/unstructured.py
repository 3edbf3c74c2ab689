"""Unstructured (irregular) sparsity: every weight is its own unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import shape_str
from spfde_core.sparsity.schemes._units import UnitScheme


@dataclass(frozen=True)
class UnstructuredScheme(UnitScheme):
    """Single-weight units (MEST ``irregular``, reference notes Sec. 1.5 / 1.6).

    ``active_count = round((1 - sparsity) * numel)``. Prune keeps the highest-scoring active
    weights; MEST keeps the weights strictly above the ``ratio``-percentile of |w|, which can keep
    fewer than the target on ties, whereas here the count is exact and ties go to the lower flat
    index. Random growth draws uniformly without replacement from all inactive weights (MEST).
    """

    name: ClassVar[str] = "unstructured"
    unit_desc: ClassVar[str] = "weight"

    def check(self, shape: torch.Size) -> None:
        """Any non-empty tensor can be unstructured-sparse."""
        if len(shape) == 0 or shape.numel() == 0:
            raise ValueError(f"unstructured scheme needs a non-empty tensor, got shape {shape_str(shape)}")

    def unit_size(self, shape: torch.Size) -> int:
        return 1

    def _to_units(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, 1)

    def _from_units(self, u: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return u.reshape(shape)
