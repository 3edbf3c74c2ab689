"""Block sparsity: MEST's ``free_block_prune_column_4`` (block_size x 1 blocks along output filters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import shape_str
from spfde_core.sparsity.schemes._units import UnitScheme


@dataclass(frozen=True)
class BlockScheme(UnitScheme):
    """``block_size`` x 1 blocks, MEST ``free_block_prune_column_4`` (reference notes Sec. 1.5 / 1.6).

    The weight is viewed as (out, in*kh*kw) (linear: (out, in)) and cut into groups of
    ``block_size`` consecutive output filters; each column of a group is one block. A block's score
    is the sum of its element scores, so passing ``w**2`` ranks blocks by squared L2 norm, the same
    order as MEST's L2-norm rule. ``active_count = round((1 - sparsity) * numel / block_size) *
    block_size``. Prune keeps the best active blocks (ties: lower group, then lower column, i.e.
    the lower flat index of the block's first weight); random growth picks empty blocks uniformly
    without replacement, as MEST does.

    Args:
        block_size: filters per block (MEST: 4). The output-channel count must be divisible by it.
    """

    block_size: int = 4

    name: ClassVar[str] = "block"
    unit_desc: ClassVar[str] = "block"

    def __post_init__(self) -> None:
        if not isinstance(self.block_size, int) or isinstance(self.block_size, bool) or self.block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {self.block_size!r}")

    def check(self, shape: torch.Size) -> None:
        """Needs a weight (out, in, ...) whose ``out`` is divisible by ``block_size`` (MEST's rule)."""
        if len(shape) < 2 or shape.numel() == 0:
            raise ValueError(f"block scheme needs a non-empty weight (out, in, ...), got {shape_str(shape)}")
        if shape[0] % self.block_size:
            raise ValueError(
                f"block scheme: output channels of shape {shape_str(shape)} ({shape[0]}) are not "
                f"divisible by block_size={self.block_size}"
            )

    def unit_size(self, shape: torch.Size) -> int:
        return self.block_size

    def _to_units(self, t: torch.Tensor) -> torch.Tensor:
        # (out, cols) -> (groups, block, cols) -> (groups, cols, block): one row per block, rows in
        # (group, column) order, which is the order of each block's lowest flat index.
        cols = t.shape[1:].numel()
        grouped = t.reshape(t.shape[0] // self.block_size, self.block_size, cols)
        return grouped.transpose(1, 2).reshape(-1, self.block_size)

    def _from_units(self, u: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        cols = shape[1:].numel()
        grouped = u.reshape(shape[0] // self.block_size, cols, self.block_size)
        return grouped.transpose(1, 2).reshape(shape)
