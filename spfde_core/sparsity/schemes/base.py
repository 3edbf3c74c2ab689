"""The interface every sparsity scheme implements (unstructured, block, pattern, N:M, channel).

A scheme decides *which shapes* of zeros a layer may have. Methods decide *which scores* rank the
candidates (|w|^2, |grad|^2, momentum, SNIP/GraSP saliency, random). Conventions:

- masks are bool tensors of the weight's shape (True = active);
- scores are non-negative float tensors of the weight's shape and are *additive*: a unit (block,
  kernel pattern, filter) is scored by the sum of its elements' scores, so magnitude pruning
  passes ``w**2`` (sum = squared L2 norm, the ranking of MEST's L2-norm block rule);
- ``sparsity`` is always the fraction of zeros over the *whole layer* (overall sparsity); a scheme
  that works at another granularity (pattern: kernel sparsity) converts internally, exactly once
  (reference notes Sec. 7.3 on the MEST code's double conversion);
- counts are exact: a scheme realises ``active_count(shape, sparsity)`` active weights, the
  nearest count its granularity allows; ties in scores go to the lower flat index, so results are
  deterministic;
- random choices (``scores=None`` growth) are drawn only from the ``generator`` passed in, on its
  own device, so a seed fixes the mask whatever device the layer lives on;
- prune / grow never modify their inputs and return a new bool tensor.

Per-scheme deviations are documented on the class: ``nm`` has a fixed sparsity 1 - N/M (any other
value raises ValueError) and ``pattern``'s prune always projects kernels onto its 8 patterns.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Scheme(Protocol):
    name: str

    def check(self, shape: torch.Size) -> None:
        """Raise ValueError (naming the shape and the rule) if a layer of this shape cannot use the scheme."""

    def active_count(self, shape: torch.Size, sparsity: float) -> int:
        """Number of active weights the scheme realises for a layer of ``shape`` at ``sparsity``."""

    def prune(self, mask: torch.Tensor, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        """Keep the best-scoring active units so the layer reaches ``sparsity``; a subset of ``mask``.

        If the layer is already at or above ``sparsity``, return ``mask`` unchanged.
        """

    def grow(
        self,
        mask: torch.Tensor,
        sparsity: float,
        scores: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Activate inactive units until the layer's sparsity drops to ``sparsity``; a superset of ``mask``.

        ``scores`` ranks the candidates (highest first); ``scores=None`` picks uniformly at random
        among all inactive units with ``generator`` (MEST / SET growth). If the layer is already at
        or below ``sparsity``, return ``mask`` unchanged.
        """
