"""Pattern sparsity: MEST's ``pattern`` + ``filter_balance`` for 3x3 convolutions.

Every non-empty 3x3 kernel holds one of 8 fixed 4-entry patterns, and every filter (output
channel) holds the same number of non-empty kernels. The overall sparsity ``r`` asked of the scheme
is converted to a kernel sparsity exactly once, here (reference notes Sec. 1.5 and 7.3: the MEST
code converts twice and lands at ~77 % instead of 90 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spfde_core.sparsity.schemes._common import (
    check_mask,
    check_scores,
    check_sparsity,
    random_int,
    random_uniform,
    round_count,
    row_ranks,
    shape_str,
)

KERNEL_SIZE = 9
PATTERN_SIZE = 4

PATTERNS: tuple[tuple[int, ...], ...] = (
    # Positions are row-major indices into the 3x3 kernel:  0 1 2 / 3 4 5 / 6 7 8.
    # ASSUMPTION: MEST's own library of 8 patterns is not in the reference notes; this is the
    # PatDNN / PCONV style set, every pattern containing the centre weight.
    # Centre plus three of its four 4-neighbours (the missing neighbour is named):
    (3, 4, 5, 7),  # 0: no up
    (1, 4, 5, 7),  # 1: no left
    (1, 3, 4, 7),  # 2: no right
    (1, 3, 4, 5),  # 3: no down
    # Centre plus two adjacent 4-neighbours plus the corner between them (a 2x2 square):
    (0, 1, 3, 4),  # 4: top-left
    (1, 2, 4, 5),  # 5: top-right
    (3, 4, 6, 7),  # 6: bottom-left
    (4, 5, 7, 8),  # 7: bottom-right
)
"""The 8 kernel patterns; a pattern's index is its tie-break rank (lower index wins)."""

MIN_SPARSITY = 1.0 - PATTERN_SIZE / KERNEL_SIZE
"""5/9: a layer of 4-of-9 kernels cannot be denser than 4/9."""

_TOL = 1e-12


def pattern_matrix(device: torch.device | str | None = None) -> torch.Tensor:
    """(8, 9) bool tensor, row ``p`` = positions of ``PATTERNS[p]`` in a flattened 3x3 kernel."""
    mat = torch.zeros(len(PATTERNS), KERNEL_SIZE, dtype=torch.bool, device=device)
    for p, positions in enumerate(PATTERNS):
        mat[p, list(positions)] = True
    return mat


def kernel_sparsity(sparsity: float) -> float:
    """Kernel sparsity ``r_k`` (fraction of empty kernels) realising overall sparsity ``r``.

    Each non-empty kernel holds 4 of 9 weights, so ``1 - r = (4/9) * (1 - r_k)``, i.e.
    ``r_k = 1 - (1 - r) * 9/4`` (MEST ``filter_balance``, reference notes Sec. 1.5; 0.9 -> 0.775).
    This is the only place the conversion happens (Sec. 7.3).

    Raises:
        ValueError: if ``r < 5/9``: a 4-of-9 pattern cannot be denser than 4/9.
    """
    sparsity = check_sparsity(sparsity)
    if sparsity < MIN_SPARSITY - _TOL:
        raise ValueError(
            f"pattern scheme: overall sparsity {sparsity:g} is below 5/9 = {MIN_SPARSITY:.6f}; "
            "a layer of 4-of-9 kernel patterns cannot be denser than 4/9"
        )
    return max(0.0, 1.0 - (1.0 - sparsity) * KERNEL_SIZE / PATTERN_SIZE)


@dataclass(frozen=True)
class PatternScheme:
    """MEST ``pattern`` + ``filter_balance`` for 3x3 convs (reference notes Sec. 1.5 / 1.6).

    Units are (kernel, pattern) pairs: a kernel is empty or holds exactly one of ``PATTERNS``.
    ``kernels_per_filter = round(C_in * (1 - r_k))`` with ``r_k = kernel_sparsity(r)``, and
    ``active_count = out * kernels_per_filter * 4``; so the realised overall sparsity equals the
    requested one within one kernel per filter (``4 / (9 * C_in)``), e.g. 0.9 -> r_k = 0.775 ->
    overall 0.9, not the ~0.77 of the MEST code's double conversion. MEST zeroes
    ``int(C_in * r_k)`` kernels per filter (truncation); here the kept count is rounded.

    A kernel's score is the sum of the scores at its pattern's positions (``w**2``: the squared L2
    norm of what the kernel keeps, the same ranking as MEST's L2 norm).
    """

    name: ClassVar[str] = "pattern"

    def check(self, shape: torch.Size) -> None:
        """Needs a non-empty conv weight (out, in, 3, 3): the patterns are 3x3 (MEST: 3x3 layers only)."""
        if len(shape) != 4 or tuple(shape[2:]) != (3, 3) or shape.numel() == 0:
            raise ValueError(
                f"pattern scheme needs a non-empty 3x3 conv weight (out, in, 3, 3), got shape {shape_str(shape)}"
            )

    def kernels_per_filter(self, shape: torch.Size, sparsity: float) -> int:
        """Non-empty kernels each filter holds at ``sparsity``: ``round(C_in * (1 - r_k))``."""
        self.check(shape)
        density_k = 1.0 - kernel_sparsity(sparsity)
        return min(shape[1], round_count(shape[1] * density_k))

    def active_count(self, shape: torch.Size, sparsity: float) -> int:
        """``out * kernels_per_filter(shape, sparsity) * 4``."""
        return shape[0] * self.kernels_per_filter(shape, sparsity) * PATTERN_SIZE

    def pattern_index(self, mask: torch.Tensor) -> torch.Tensor:
        """(out, in) long tensor: each kernel's pattern index, -1 if empty, -2 if not a pattern."""
        check_mask(mask)
        self.check(mask.shape)
        kernels = mask.reshape(mask.shape[0], mask.shape[1], KERNEL_SIZE)
        matches = (kernels.unsqueeze(2) == pattern_matrix(mask.device)).all(dim=3)  # (out, in, 8)
        index = torch.where(matches.any(dim=2), matches.int().argmax(dim=2), -2)
        return torch.where(kernels.any(dim=2), index, -1)

    def prune(self, mask: torch.Tensor, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
        """Pattern step, then filter balance (MEST order); returns a subset of ``mask``.

        (a) Pattern step: every non-empty kernel keeps the pattern, among those whose 4 positions
        are all currently active, with the highest summed score (ties: lower pattern index). A
        kernel that already is a pattern therefore keeps it; a kernel that contains no complete
        pattern (possible only for a mask not made by this scheme) is emptied, since any pattern
        would add weights. (b) Filter balance: in every filter keep the ``kernels_per_filter``
        kernels with the highest pattern score (ties: lower input channel) and empty the rest; a
        filter with fewer non-empty kernels keeps them all.

        Unlike the unit schemes this always projects onto patterns, so a dense mask (MEST's
        hardening) gives exactly ``active_count`` weights. The "already sparse enough" rule of
        base.py applies per filter (filter balance is per filter): a pattern mask whose filters
        each hold at most ``kernels_per_filter`` kernels is returned unchanged.
        """
        check_mask(mask)
        check_scores(scores, mask)
        keep_k = self.kernels_per_filter(mask.shape, sparsity)
        out, cin = mask.shape[0], mask.shape[1]
        kernels = mask.reshape(out, cin, KERNEL_SIZE)
        kscores = scores.reshape(out, cin, KERNEL_SIZE).double()
        patterns = pattern_matrix(mask.device)
        # A pattern fits a kernel when all 4 of its positions are active: count them with a matmul.
        fits = (kernels.double() @ patterns.double().T) == PATTERN_SIZE  # (out, in, 8)
        pscores = torch.where(fits, kscores @ patterns.double().T, float("-inf"))
        best = pscores.argmax(dim=2)  # argmax returns the first maximum: lower pattern index wins
        has_fit = fits.any(dim=2)
        keys = torch.where(has_fit, pscores.gather(2, best.unsqueeze(2)).squeeze(2), float("-inf"))
        keep = has_fit & (row_ranks(keys) < keep_k)
        return (patterns[best] & keep.unsqueeze(2)).reshape(mask.shape)

    def grow(
        self,
        mask: torch.Tensor,
        sparsity: float,
        scores: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Give each filter ``kernels_per_filter(sparsity) - non-empty`` new pattern kernels.

        Only empty kernels are candidates. ``scores=None`` is MEST's rule (Sec. 1.6): the kernels
        are chosen uniformly at random without replacement within the filter, each with a uniformly
        random pattern, all drawn with ``generator``. With ``scores`` every empty kernel is paired
        with its best pattern (ties: lower pattern index) and each filter takes its best pairs
        (ties: lower input channel). Returns a superset of ``mask``.
        """
        check_mask(mask)
        if scores is not None:
            check_scores(scores, mask)
        keep_k = self.kernels_per_filter(mask.shape, sparsity)
        out, cin = mask.shape[0], mask.shape[1]
        kernels = mask.reshape(out, cin, KERNEL_SIZE)
        empty = ~kernels.any(dim=2)
        deficit = (keep_k - (~empty).sum(dim=1)).clamp(min=0)  # (out,)
        if not bool(deficit.any()):
            return mask.clone()
        patterns = pattern_matrix(mask.device)
        if scores is None:
            # Both draws are always full-size, so a seed fixes the result regardless of the mask.
            keys = random_uniform((out, cin), generator, mask.device)
            chosen = random_int(len(PATTERNS), (out, cin), generator, mask.device)
        else:
            pscores = scores.reshape(out, cin, KERNEL_SIZE).double() @ patterns.double().T
            chosen = pscores.argmax(dim=2)
            keys = pscores.gather(2, chosen.unsqueeze(2)).squeeze(2)
        keys = torch.where(empty, keys, float("-inf"))
        add = empty & (row_ranks(keys) < deficit.unsqueeze(1))
        return (kernels | (patterns[chosen] & add.unsqueeze(2))).reshape(mask.shape)
