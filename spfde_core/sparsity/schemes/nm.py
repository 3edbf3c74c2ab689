"""N:M fine-grained structured sparsity (default 2:4): every group of M input weights keeps N."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import (
    check_mask,
    check_scores,
    check_sparsity,
    random_uniform,
    row_ranks,
    shape_str,
)

_SPARSITY_TOL = 1e-9
"""How far a requested sparsity may sit from 1 - N/M (float noise only; N:M sparsity is fixed)."""


@dataclass(frozen=True)
class NMScheme:
    """N:M sparsity: each group of ``m`` weights along the input dimension keeps exactly ``n``.

    Grouping (a documented choice): for a linear weight (out, in) a group is ``m`` consecutive
    input features of one output row. For a conv weight (out, in, kh, kw) a group is ``m``
    consecutive *input channels* at the same (out, kh, kw) position, i.e. the weight is permuted to
    (out, kh, kw, in) and grouped along ``in``. This is the layout of NVIDIA's 2:4 sparse tensor
    cores (apex ASP permutes a conv weight to (kh, kw, out, in) and groups along ``in``), not the
    row-major flattening ``in*kh*kw``, which would mix channels and kernel positions. So ``in`` must
    be divisible by ``m``.

    The sparsity is fixed at ``1 - n/m``: ``active_count`` (and so prune / grow) raises ValueError
    for any other requested sparsity (tolerance 1e-9), rather than silently ignoring it. Hence a
    MEST-style mutation (prune to a higher sparsity, grow back) does not apply to this scheme; a
    method re-ranks weights by calling ``prune`` on a mask with extra active weights instead.

    ``active_count = numel * n / m``. ``prune`` keeps the top-``n`` active weights of each group
    (a group with at most ``n`` active keeps them all), so from a mask with at least ``n`` active
    per group (e.g. dense) it realises exactly ``active_count``. ``grow`` fills every group up to
    ``n`` with its best (or uniformly random) inactive weights, so it always realises exactly
    ``active_count``. Ties go to the lower input channel, which is also the lower flat index.

    Args:
        n: weights kept per group (1 <= n <= m).
        m: group size.
    """

    n: int = 2
    m: int = 4

    name: ClassVar[str] = "nm"

    def __post_init__(self) -> None:
        for field_name in ("n", "m"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"nm scheme: {field_name} must be an int, got {value!r}")
        if not 1 <= self.n <= self.m:
            raise ValueError(f"nm scheme needs 1 <= n <= m, got n={self.n}, m={self.m}")

    @property
    def sparsity(self) -> float:
        """The scheme's fixed overall sparsity, ``1 - n/m``."""
        return 1.0 - self.n / self.m

    def check(self, shape: torch.Size) -> None:
        """Needs a linear (out, in) or conv (out, in, kh, kw) weight with ``in`` divisible by ``m``."""
        if len(shape) not in (2, 4) or shape.numel() == 0:
            raise ValueError(
                f"nm scheme needs a non-empty linear (out, in) or conv (out, in, kh, kw) weight, "
                f"got shape {shape_str(shape)}"
            )
        if shape[1] % self.m:
            raise ValueError(
                f"nm scheme ({self.n}:{self.m}): input channels of shape {shape_str(shape)} "
                f"({shape[1]}) are not divisible by m={self.m}"
            )

    def active_count(self, shape: torch.Size, sparsity: float) -> int:
        """``numel * n / m``; ``sparsity`` is only validated against the fixed ``1 - n/m``."""
        self.check(shape)
        sparsity = check_sparsity(sparsity)
        if abs(sparsity - self.sparsity) > _SPARSITY_TOL:
            raise ValueError(
                f"nm scheme ({self.n}:{self.m}) has fixed sparsity {self.sparsity:g}, cannot realise {sparsity:g}"
            )
        return shape.numel() * self.n // self.m

    def _groups(self, t: torch.Tensor) -> torch.Tensor:
        """(n_groups, m) view of a weight-shaped tensor, grouping along input channels."""
        if t.dim() == 4:
            t = t.permute(0, 2, 3, 1)  # channels-last, so consecutive channels share (kh, kw)
        return t.reshape(-1, self.m)

    def _ungroup(self, g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if len(shape) == 4:
            out, cin, kh, kw = shape
            return g.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
        return g.reshape(shape)

    def prune(self, mask: torch.Tensor, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        """Keep the ``n`` highest-scoring active weights of every group; a subset of ``mask``."""
        check_mask(mask)
        check_scores(scores, mask)
        self.active_count(mask.shape, sparsity)  # validates shape and sparsity
        groups = self._groups(mask)
        # Inactive weights get -inf so they rank after every active one and are never kept.
        keys = torch.where(groups, self._groups(scores).double(), float("-inf"))
        keep = groups & (row_ranks(keys) < self.n)
        return self._ungroup(keep, mask.shape)

    def grow(
        self,
        mask: torch.Tensor,
        sparsity: float,
        scores: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill every group with fewer than ``n`` active weights up to ``n``; a superset of ``mask``.

        Candidates are the group's inactive weights, ranked by ``scores`` or, with ``scores=None``,
        by uniform random keys drawn with ``generator`` (a uniform choice without replacement per
        group, the N:M analogue of MEST's random growth).
        """
        check_mask(mask)
        if scores is not None:
            check_scores(scores, mask)
        self.active_count(mask.shape, sparsity)
        groups = self._groups(mask)
        deficit = (self.n - groups.sum(dim=1)).clamp(min=0)
        if not bool(deficit.any()):
            return mask.clone()
        if scores is None:
            cand = random_uniform(tuple(groups.shape), generator, groups.device)
        else:
            cand = self._groups(scores).double()
        keys = torch.where(groups, float("-inf"), cand)  # active weights are not candidates
        grown = groups | (~groups & (row_ranks(keys) < deficit.unsqueeze(1)))
        return self._ungroup(grown, mask.shape)
