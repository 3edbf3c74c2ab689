"""Hand-built cases for the pattern scheme (4-of-9 patterns + filter balance, 3x3 convs)."""

from __future__ import annotations

import pytest
import torch

from spfde_core.sparsity.schemes import PatternScheme
from spfde_core.sparsity.schemes.pattern import PATTERNS, kernel_sparsity

PATTERN_SETS = [frozenset(p) for p in PATTERNS]


def _kernel(positions: list[int] | tuple[int, ...], values: float | list[float] = 1.0) -> torch.Tensor:
    """A 3x3 float kernel with ``values`` at the row-major ``positions``."""
    k = torch.zeros(9)
    k[list(positions)] = torch.as_tensor(values, dtype=torch.float32)
    return k.reshape(3, 3)


def _assert_pattern_mask(mask: torch.Tensor, per_filter: int) -> None:
    """Every kernel is empty or exactly one of the 8 patterns; each filter holds ``per_filter``."""
    out, cin = mask.shape[:2]
    for o in range(out):
        nonempty = 0
        for c in range(cin):
            on = frozenset(mask[o, c].flatten().nonzero().flatten().tolist())
            if on:
                assert on in PATTERN_SETS, (o, c, sorted(on))
                nonempty += 1
        assert nonempty == per_filter, (o, nonempty)


def test_pattern_library_is_8_distinct_4_of_9_patterns() -> None:
    assert len(PATTERN_SETS) == 8 == len(set(PATTERN_SETS))
    assert all(len(p) == 4 and p <= set(range(9)) for p in PATTERN_SETS)


def test_overall_sparsity_is_converted_once() -> None:
    assert kernel_sparsity(0.9) == pytest.approx(0.775)
    assert kernel_sparsity(0.95) == pytest.approx(0.8875)
    assert kernel_sparsity(5 / 9) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="cannot be denser than 4/9"):
        kernel_sparsity(0.5)
    with pytest.raises(ValueError, match="5/9"):
        PatternScheme().active_count(torch.Size((4, 8, 3, 3)), 0.3)


def test_prune_at_0_9_realises_0_9_overall_not_0_77() -> None:
    scheme = PatternScheme()
    # C_in = 40: 40 * 0.225 = 9 kernels per filter, exactly 90 % overall (kernel sparsity 0.775).
    shape = (8, 40, 3, 3)
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    pruned = scheme.prune(torch.ones(shape, dtype=torch.bool), scores, 0.9)
    assert scheme.kernels_per_filter(torch.Size(shape), 0.9) == 9
    assert int(pruned.sum()) == scheme.active_count(torch.Size(shape), 0.9) == 8 * 9 * 4
    assert 1 - int(pruned.sum()) / pruned.numel() == pytest.approx(0.9, abs=1e-12)
    empty_kernels = ~pruned.reshape(8, 40, 9).any(dim=2)
    assert empty_kernels.float().mean().item() == pytest.approx(0.775)
    _assert_pattern_mask(pruned, 9)

    # C_in = 32 (ResNet-32 stage 1): 7.2 -> 7 kernels; within one kernel per filter of 0.9, far
    # from the ~0.77 of the MEST code's double conversion.
    shape = (8, 32, 3, 3)
    pruned = scheme.prune(torch.ones(shape, dtype=torch.bool), torch.rand(shape), 0.9)
    realised = 1 - int(pruned.sum()) / pruned.numel()
    assert abs(realised - 0.9) <= 4 / (9 * 32)
    assert realised > 0.89
    _assert_pattern_mask(pruned, 7)


def test_pattern_step_picks_best_pattern_lower_index_on_ties() -> None:
    scores = torch.zeros(1, 3, 3, 3)
    scores[0, 0] = _kernel([1, 2, 4, 5, 8], [1.0, 5.0, 1.0, 1.0, 4.0])  # top-right square: 8
    scores[0, 1] = torch.ones(3, 3)  # all 8 patterns tie at 4 -> pattern 0
    scores[0, 2] = _kernel([3, 4, 5, 7], 2.0)  # "no up" (pattern 0) = 8 beats all others (6)
    pruned = PatternScheme().prune(torch.ones(1, 3, 3, 3, dtype=torch.bool), scores, 5 / 9)
    assert torch.equal(pruned[0, 0], _kernel(PATTERNS[5]).bool())  # (1, 2, 4, 5)
    assert torch.equal(pruned[0, 1], _kernel(PATTERNS[0]).bool())
    assert torch.equal(pruned[0, 2], _kernel((3, 4, 5, 7)).bool())


def test_pattern_step_only_uses_active_positions() -> None:
    mask = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    mask[0, 0] = _kernel([0, 1, 3, 4, 8]).bool()  # only the top-left square fits
    mask[0, 1] = _kernel([0, 1, 2]).bool()  # no pattern fits: emptied (any pattern would add weights)
    mask[0, 2] = _kernel(PATTERNS[6]).bool()  # already a pattern: kept whatever the scores say
    scores = torch.ones(1, 3, 3, 3)
    scores[0, :, 2, 2] = 100.0
    pruned = PatternScheme().prune(mask, scores, 5 / 9)
    assert torch.equal(pruned[0, 0], _kernel(PATTERNS[4]).bool())
    assert not bool(pruned[0, 1].any())
    assert torch.equal(pruned[0, 2], mask[0, 2])


def test_filter_balance_ranks_kernels_by_their_pattern_score() -> None:
    # Keep 2 kernels per filter: 1 - r = (4/9) * (2/4)  ->  r = 7/9.
    corners, cross = [0, 2, 6, 8], [1, 3, 4, 5, 7]
    scores = torch.zeros(2, 4, 3, 3)
    scores[0, 0] = _kernel(corners, 5.0)  # full norm^2 20, best pattern 5 (one corner)
    scores[0, 1] = _kernel(cross, 2.0)  # full 10, best pattern 8
    scores[0, 2] = torch.full((3, 3), 1.5)  # full 13.5, best pattern 6
    scores[1, 1] = torch.ones(3, 3)  # filter 1: kernels 1 and 3 tie (4), kernel 2 is 3.6
    scores[1, 3] = torch.ones(3, 3)
    scores[1, 2] = torch.full((3, 3), 0.9)
    scheme = PatternScheme()
    assert scheme.kernels_per_filter(torch.Size((2, 4, 3, 3)), 7 / 9) == 2
    pruned = scheme.prune(torch.ones(2, 4, 3, 3, dtype=torch.bool), scores, 7 / 9)
    nonempty = pruned.reshape(2, 4, 9).any(dim=2)
    # Filter 0: kernels 1 (8) and 2 (6), not 0, which has the largest full-kernel norm.
    assert nonempty[0].tolist() == [False, True, True, False]
    assert nonempty[1].tolist() == [False, True, False, True]
    _assert_pattern_mask(pruned, 2)


def test_filter_balance_ties_go_to_lower_input_channel() -> None:
    scores = torch.ones(1, 4, 3, 3)
    pruned = PatternScheme().prune(torch.ones(1, 4, 3, 3, dtype=torch.bool), scores, 1 - 4 / 9 / 4)
    assert pruned.reshape(4, 9).any(dim=1).tolist() == [True, False, False, False]


def test_random_grow_adds_random_patterns_to_empty_kernels() -> None:
    scheme = PatternScheme()
    shape = (6, 16, 3, 3)
    dense = torch.ones(shape, dtype=torch.bool)
    mask = scheme.prune(dense, torch.rand(shape, generator=torch.Generator().manual_seed(0)), 0.9)
    _assert_pattern_mask(mask, 4)  # round(16 * 0.225) = 4
    grown = scheme.grow(mask, 0.8, generator=torch.Generator().manual_seed(1))
    _assert_pattern_mask(grown, 7)  # round(16 * 0.45) = 7
    nonempty = mask.reshape(6, 16, 9).any(dim=2)
    assert torch.equal(grown.reshape(6, 16, 9)[nonempty], mask.reshape(6, 16, 9)[nonempty])
    # Both the kernels and their patterns are random: several patterns appear among new kernels.
    new = grown.reshape(6, 16, 9)[~nonempty & grown.reshape(6, 16, 9).any(dim=2)]
    assert len({frozenset(k.nonzero().flatten().tolist()) for k in new}) >= 4


def test_scored_grow_takes_best_empty_kernel_with_its_best_pattern() -> None:
    scheme = PatternScheme()
    mask = torch.zeros(1, 4, 3, 3, dtype=torch.bool)
    mask[0, 0] = _kernel(PATTERNS[0]).bool()
    scores = torch.zeros(1, 4, 3, 3)
    scores[0, 0] = 100.0  # already non-empty: not a candidate
    scores[0, 1] = _kernel([4, 5, 7, 8], 1.0)  # bottom-right square: 4
    scores[0, 2] = _kernel([4, 5, 7, 8], 1.0)  # ties kernel 1 -> kernel 1 wins
    scores[0, 3] = _kernel([0, 2, 6, 8], 1.0)  # best pattern only 1
    grown = scheme.grow(mask, 1 - 2 * 4 / 36, scores=scores)  # 2 kernels per filter
    expected = mask.clone()
    expected[0, 1] = _kernel(PATTERNS[7]).bool()
    assert torch.equal(grown, expected)


def test_pattern_index_reports_patterns_and_empties() -> None:
    mask = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    mask[0, 0] = _kernel(PATTERNS[3]).bool()
    mask[0, 2] = _kernel([0, 1]).bool()
    assert PatternScheme().pattern_index(mask).tolist() == [[3, -1, -2]]


def test_check_rejects_non_3x3() -> None:
    with pytest.raises(ValueError, match=r"\(8, 16, 1, 1\)"):
        PatternScheme().check(torch.Size((8, 16, 1, 1)))
