"""Channel (filter) sparsity: a unit is one whole output filter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import shape_str
from spfde_core.sparsity.schemes._units import UnitScheme


@dataclass(frozen=True)
class ChannelScheme(UnitScheme):
    """Whole-output-filter units: row ``o`` of a conv (out, in, kh, kw) or linear (out, in) weight.

    A filter's score is the sum of its element scores (``w**2`` gives the squared L2 norm), so
    ``active_count = round((1 - sparsity) * out) * (numel / out)``; prune keeps the best filters,
    ties to the lower filter index, and random growth revives empty filters uniformly.

    MEST's README lists a "channel" type but ``utils_pr.py`` never implements it (reference notes
    Sec. 1.5 / 7.7: choosing it raises an error), so this scheme follows the generic unit rule
    rather than any MEST code.
    """

    name: ClassVar[str] = "channel"
    unit_desc: ClassVar[str] = "filter"

    def check(self, shape: torch.Size) -> None:
        """Needs a weight with an output dimension: ndim >= 2 and no empty dimension."""
        if len(shape) < 2 or shape.numel() == 0:
            raise ValueError(f"channel scheme needs a non-empty weight of shape (out, in, ...), got {shape_str(shape)}")

    def unit_size(self, shape: torch.Size) -> int:
        return shape.numel() // shape[0]

    def _to_units(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1)

    def _from_units(self, u: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return u.reshape(shape)
