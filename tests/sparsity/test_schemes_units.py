"""Hand-built cases for the partition schemes: unstructured, block (4x1) and channel."""

from __future__ import annotations

import pytest
import torch

from spfde_core.sparsity.schemes import BlockScheme, ChannelScheme, UnstructuredScheme

T, F = True, False


def _dense(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.ones(shape, dtype=torch.bool)


# ---------------------------------------------------------------- unstructured

SCORES_2x3 = torch.tensor([[0.5, 0.9, 0.1], [0.9, 0.2, 0.7]])


@pytest.mark.parametrize(
    ("sparsity", "expected"),
    [
        (0.5, [[F, T, F], [T, F, T]]),  # keep 3: 0.9, 0.9, 0.7
        (2 / 3, [[F, T, F], [T, F, F]]),  # keep 2: both 0.9s
        (5 / 6, [[F, T, F], [F, F, F]]),  # keep 1: tie 0.9 at flat 1 and 3 -> lower index 1 wins
        (1.0, [[F, F, F], [F, F, F]]),
    ],
)
def test_unstructured_prune_keeps_highest_scores(sparsity: float, expected: list) -> None:
    pruned = UnstructuredScheme().prune(_dense((2, 3)), SCORES_2x3, sparsity)
    assert torch.equal(pruned, torch.tensor(expected))


def test_unstructured_prune_only_keeps_active_weights() -> None:
    mask = torch.tensor([[T, F, T], [T, T, T]])  # the 0.9 at flat 1 is inactive
    pruned = UnstructuredScheme().prune(mask, SCORES_2x3, 4 / 6)
    assert torch.equal(pruned, torch.tensor([[F, F, F], [T, F, T]]))  # 0.9 @3, 0.7 @5


def test_unstructured_scored_grow_takes_best_inactive_lower_index_on_ties() -> None:
    mask = torch.tensor([[F, F, F], [F, F, T]])  # only the 0.7 active
    grown = UnstructuredScheme().grow(mask, 4 / 6, scores=SCORES_2x3)  # one more: tie 0.9 @1 / @3
    assert torch.equal(grown, torch.tensor([[F, T, F], [F, F, T]]))
    grown = UnstructuredScheme().grow(mask, 0.5, scores=SCORES_2x3)
    assert torch.equal(grown, torch.tensor([[F, T, F], [T, F, T]]))


def test_unstructured_active_count_rounds() -> None:
    scheme = UnstructuredScheme()
    assert scheme.active_count(torch.Size((10,)), 0.9) == 1  # 0.9999999999999998 -> 1, not 0
    assert scheme.active_count(torch.Size((3, 3)), 0.5) == 4  # 4.5 -> 4 (half to even)
    assert scheme.active_count(torch.Size((4, 4)), 0.0) == 16


def test_unstructured_random_grow_is_uniform_over_inactive() -> None:
    # 4 inactive weights, grow one: over 2000 seeds each should be picked ~500 times.
    mask = torch.tensor([T, F, T, F, F, T, T, F])
    counts = torch.zeros(8)
    for seed in range(2000):
        grown = UnstructuredScheme().grow(mask, 3 / 8, generator=torch.Generator().manual_seed(seed))
        counts += (grown & ~mask).float()
    assert counts[mask].sum() == 0
    assert torch.all((counts[~mask] > 400) & (counts[~mask] < 600)), counts


# ---------------------------------------------------------------- block


def _block_weights() -> torch.Tensor:
    """Linear (8, 2): blocks (group, column) = rows 4g..4g+3 of column c."""
    w = torch.zeros(8, 2)
    w[0:4, 0] = torch.tensor([3.0, 0.0, 0.0, 0.0])  # A: largest |w| of all, L2^2 = 9
    w[0:4, 1] = torch.tensor([2.0, 2.0, 2.0, 2.0])  # B: L2^2 = 16
    w[4:8, 0] = torch.tensor([2.0, 2.0, 1.5, 0.0])  # C: L2^2 = 10.25
    w[4:8, 1] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # D: L2^2 = 4
    return w


def test_block_prune_ranks_4x1_blocks_by_l2_norm() -> None:
    w = _block_weights()
    pruned = BlockScheme().prune(_dense((8, 2)), w**2, 0.5)  # keep 2 of 4 blocks
    expected = torch.zeros(8, 2, dtype=torch.bool)
    expected[0:4, 1] = True  # B
    expected[4:8, 0] = True  # C beats A although A holds the largest single weight
    assert torch.equal(pruned, expected)


def test_block_prune_tie_goes_to_lower_flat_index() -> None:
    w = _block_weights()
    w[4:8, 0] = 2.0  # C now ties B (L2^2 = 16); B's first weight is flat 1, C's is flat 8
    pruned = BlockScheme().prune(_dense((8, 2)), w**2, 0.75)
    expected = torch.zeros(8, 2, dtype=torch.bool)
    expected[0:4, 1] = True
    assert torch.equal(pruned, expected)
    # Within one group, the lower column wins.
    w = torch.ones(8, 2)
    pruned = BlockScheme().prune(_dense((8, 2)), w, 0.75)
    expected = torch.zeros(8, 2, dtype=torch.bool)
    expected[0:4, 0] = True
    assert torch.equal(pruned, expected)


def test_block_conv_units_are_4x1_along_output_filters() -> None:
    """Compare with a brute-force reference over the (out, in*kh*kw) view."""
    shape = (8, 3, 3, 3)
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    pruned = BlockScheme().prune(_dense(shape), scores, 0.8)
    flat = scores.reshape(8, 27)
    blocks = [(float(flat[4 * g : 4 * g + 4, c].sum()), g, c) for g in range(2) for c in range(27)]
    n_keep = round(0.2 * 216 / 4)
    best = sorted(blocks, key=lambda b: (-b[0], b[1], b[2]))[:n_keep]
    expected = torch.zeros(8, 27, dtype=torch.bool)
    for _, g, c in best:
        expected[4 * g : 4 * g + 4, c] = True
    assert torch.equal(pruned.reshape(8, 27), expected)
    assert int(pruned.sum()) == BlockScheme().active_count(torch.Size(shape), 0.8) == 11 * 4


def test_block_size_parameter() -> None:
    scores = torch.arange(12.0).reshape(6, 2)
    pruned = BlockScheme(block_size=2).prune(_dense((6, 2)), scores, 5 / 6)  # keep 1 block of 2
    expected = torch.zeros(6, 2, dtype=torch.bool)
    expected[4:6, 1] = True  # rows 4-5, column 1: 9 + 11
    assert torch.equal(pruned, expected)


def test_block_random_grow_adds_whole_empty_blocks() -> None:
    mask = torch.zeros(8, 4, dtype=torch.bool)
    mask[0:4, 2] = True
    grown = BlockScheme().grow(mask, 0.5, generator=torch.Generator().manual_seed(3))
    assert int(grown.sum()) == 16
    blocks = grown.reshape(2, 4, 4)
    assert torch.equal(blocks.all(dim=1), blocks.any(dim=1))  # every block all-on or all-off
    assert bool(grown[0:4, 2].all())


def test_block_random_grow_is_uniform_over_empty_blocks() -> None:
    mask = torch.zeros(8, 2, dtype=torch.bool)
    mask[0:4, 0] = True  # 3 empty blocks, grow one
    counts = torch.zeros(8, 2)
    for seed in range(1500):
        grown = BlockScheme().grow(mask, 0.5, generator=torch.Generator().manual_seed(seed))
        counts += (grown & ~mask).float()
    per_block = counts[[0, 4, 4], [1, 0, 1]]
    assert counts[0:4, 0].sum() == 0
    assert torch.all((per_block > 400) & (per_block < 600)), per_block


def test_block_rejects_partial_block_masks() -> None:
    mask = _dense((8, 2))
    mask[1, 0] = False
    with pytest.raises(ValueError, match="partially active block"):
        BlockScheme().prune(mask, torch.ones(8, 2), 0.5)


def test_block_check_names_shape_and_rule() -> None:
    with pytest.raises(ValueError, match=r"\(6, 2, 3, 3\).*divisible by block_size=4"):
        BlockScheme().check(torch.Size((6, 2, 3, 3)))


# ---------------------------------------------------------------- channel


def _channel_scores() -> torch.Tensor:
    s = torch.zeros(4, 2, 3, 3)
    s[0, 0, 1, 1] = 10.0  # the largest element, filter sum 10
    s[1] = 1.0  # sum 18
    s[2] = 2.0  # sum 36
    s[3] = 2.0  # sum 36 (ties filter 2)
    return s


@pytest.mark.parametrize(
    ("sparsity", "kept"),
    [(0.25, [1, 2, 3]), (0.5, [2, 3]), (0.75, [2])],  # 0.75: tie 2 vs 3 -> lower filter wins
)
def test_channel_prune_keeps_whole_best_filters(sparsity: float, kept: list[int]) -> None:
    pruned = ChannelScheme().prune(_dense((4, 2, 3, 3)), _channel_scores(), sparsity)
    expected = torch.zeros(4, 2, 3, 3, dtype=torch.bool)
    expected[kept] = True
    assert torch.equal(pruned, expected)


def test_channel_random_grow_revives_whole_filters() -> None:
    mask = torch.zeros(6, 3, dtype=torch.bool)
    mask[2] = True
    grown = ChannelScheme().grow(mask, 0.5, generator=torch.Generator().manual_seed(0))
    rows = grown.all(dim=1)
    assert torch.equal(rows, grown.any(dim=1))
    assert int(rows.sum()) == 3 and bool(rows[2])


def test_channel_scored_grow_picks_best_empty_filters() -> None:
    mask = torch.zeros(4, 2, 3, 3, dtype=torch.bool)
    mask[2] = True
    grown = ChannelScheme().grow(mask, 0.5, scores=_channel_scores())  # one more: filter 3 (36)
    expected = torch.zeros(4, 2, 3, 3, dtype=torch.bool)
    expected[[2, 3]] = True
    assert torch.equal(grown, expected)


def test_channel_rejects_partial_filter_masks() -> None:
    mask = _dense((4, 2))
    mask[3, 1] = False
    with pytest.raises(ValueError, match="partially active filter"):
        ChannelScheme().grow(mask, 0.0)
