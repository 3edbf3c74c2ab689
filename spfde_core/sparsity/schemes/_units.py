"""Shared prune/grow for schemes that partition a layer into equal, disjoint units.

Unstructured (1 weight), block (``block_size`` x 1 along output filters) and channel (a whole
output filter) differ only in how a weight tensor is cut into units; ranking, counting and random
growth are the same, so they live here once.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import (
    check_mask,
    check_scores,
    check_sparsity,
    random_perm,
    round_count,
    shape_str,
    top_indices,
)


class UnitScheme:
    """Base of the partition schemes; subclasses define ``name``, ``check``, ``_to_units`` and
    ``_from_units``.

    A mask handled by these schemes must consist of whole units (every unit fully active or fully
    inactive); prune and grow raise ValueError otherwise, because a partial unit has no well-defined
    place in an exact unit count. A dense mask (the starting point of MEST's hardening) and every
    mask these schemes return satisfy this.
    """

    name: ClassVar[str] = "unit"
    unit_desc: ClassVar[str] = "unit"
    """How error messages name a unit, e.g. '4x1 block'."""

    def check(self, shape: torch.Size) -> None:
        raise NotImplementedError

    def _to_units(self, t: torch.Tensor) -> torch.Tensor:
        """View ``t`` (weight-shaped) as (n_units, unit_size), units ordered by their lowest flat
        index so that "lower unit index wins" is the base.py tie rule."""
        raise NotImplementedError

    def _from_units(self, u: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Inverse of ``_to_units`` for a (n_units, unit_size) tensor."""
        raise NotImplementedError

    def unit_size(self, shape: torch.Size) -> int:
        """Number of weights in one unit of a layer of ``shape``."""
        raise NotImplementedError

    def active_count(self, shape: torch.Size, sparsity: float) -> int:
        """``round((1 - sparsity) * n_units) * unit_size``: the nearest whole number of units."""
        self.check(shape)
        sparsity = check_sparsity(sparsity)
        size = self.unit_size(shape)
        n_units = shape.numel() // size
        return round_count((1.0 - sparsity) * n_units) * size

    def _active_units(self, mask: torch.Tensor) -> torch.Tensor:
        """(n_units,) bool: which units are active; raises if a unit is partially active."""
        units = self._to_units(mask)
        any_on = units.any(dim=1)
        if not torch.equal(any_on, units.all(dim=1)):
            raise ValueError(
                f"{self.name} scheme: mask of shape {shape_str(mask.shape)} has partially active "
                f"{self.unit_desc}s; this scheme only handles masks made of whole {self.unit_desc}s"
            )
        return any_on

    def _expand(self, active: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        size = self.unit_size(shape)
        return self._from_units(active.unsqueeze(1).expand(-1, size), shape).contiguous()

    def prune(self, mask: torch.Tensor, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        """Keep the ``active_count`` / unit_size active units with the highest summed score.

        Source rule: MEST ``weight_pruning`` (reference notes Sec. 1.5) keeps the units whose norm
        is above the layer's ``ratio``-percentile; here the count is exact and ties go to the lower
        unit index instead of depending on a percentile threshold. Only currently active units are
        candidates, so the result is a subset of ``mask``. Returns a new tensor.
        """
        check_mask(mask)
        check_scores(scores, mask)
        target = self.active_count(mask.shape, sparsity) // self.unit_size(mask.shape)
        active = self._active_units(mask)
        if int(active.sum()) <= target:
            return mask.clone()
        unit_scores = self._to_units(scores).sum(dim=1)
        candidates = active.nonzero().squeeze(1)  # ascending, so the stable sort keeps index order
        chosen = candidates[top_indices(unit_scores[candidates], target)]
        keep = torch.zeros_like(active)
        keep[chosen] = True
        return self._expand(keep, mask.shape)

    def grow(
        self,
        mask: torch.Tensor,
        sparsity: float,
        scores: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Activate inactive units until the layer holds ``active_count`` weights.

        Source rule: MEST ``weight_growing`` (reference notes Sec. 1.6) picks zero units uniformly
        at random without replacement, including units pruned a moment earlier; that is the
        ``scores=None`` path (one ``randperm`` over the inactive units, drawn with ``generator``).
        With ``scores`` the highest summed-score inactive units are taken, ties to the lower index.
        Returns a new tensor, a superset of ``mask``.
        """
        check_mask(mask)
        if scores is not None:
            check_scores(scores, mask)
        target = self.active_count(mask.shape, sparsity) // self.unit_size(mask.shape)
        active = self._active_units(mask)
        need = target - int(active.sum())
        if need <= 0:
            return mask.clone()
        candidates = (~active).nonzero().squeeze(1)
        if scores is None:
            picked = random_perm(candidates.numel(), generator, candidates.device)[:need]
        else:
            picked = top_indices(self._to_units(scores).sum(dim=1)[candidates], need)
        grown = active.clone()
        grown[candidates[picked]] = True
        return self._expand(grown, mask.shape)
