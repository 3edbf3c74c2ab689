"""Hand-built cases for the N:M scheme (groups of M consecutive input channels)."""

from __future__ import annotations

import pytest
import torch

from spfde_core.sparsity.schemes import NMScheme

T, F = True, False


def test_nm_linear_prune_keeps_top_n_per_group_lower_index_on_ties() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.4, 0.3, 0.2, 0.5, 0.5, 0.5, 0.1],  # group 2: three-way tie -> inputs 4, 5
            [0.9, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0],  # group 4: all tie -> inputs 4, 5
        ]
    )
    pruned = NMScheme().prune(torch.ones(2, 8, dtype=torch.bool), scores, 0.5)
    expected = torch.tensor([[F, T, T, F, T, T, F, F], [T, F, F, T, T, T, F, F]])
    assert torch.equal(pruned, expected)


def test_nm_prune_only_keeps_active_weights() -> None:
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2, 0.5, 0.6, 0.7, 0.8]])
    mask = torch.tensor([[T, F, T, T, F, F, F, T]])  # group 2 has a single active weight
    pruned = NMScheme().prune(mask, scores, 0.5)
    assert torch.equal(pruned, torch.tensor([[F, F, T, T, F, F, F, T]]))


def test_nm_conv_groups_consecutive_input_channels_at_one_kernel_position() -> None:
    # (out=1, in=4, kh=1, kw=2); channel c scores c+1 at both kernel positions. Grouping along
    # input channels keeps channels 2 and 3 at both positions; grouping the row-major flattening
    # (c0k0, c0k1, c1k0, c1k1 | ...) would instead keep channel 1 and channel 3.
    scores = torch.arange(1.0, 5.0).reshape(1, 4, 1, 1).expand(1, 4, 1, 2).contiguous()
    pruned = NMScheme().prune(torch.ones(1, 4, 1, 2, dtype=torch.bool), scores, 0.5)
    expected = torch.zeros(1, 4, 1, 2, dtype=torch.bool)
    expected[:, 2:] = True
    assert torch.equal(pruned, expected)


def test_nm_conv_every_group_keeps_exactly_n() -> None:
    shape = (3, 8, 3, 3)
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    for n, m, sparsity in ((2, 4, 0.5), (1, 4, 0.75), (2, 8, 0.75)):
        scheme = NMScheme(n=n, m=m)
        pruned = scheme.prune(torch.ones(shape, dtype=torch.bool), scores, sparsity)
        groups = pruned.permute(0, 2, 3, 1).reshape(-1, m)
        assert torch.all(groups.sum(dim=1) == n)
        # ...and they are the group's top-n scores
        gscores = scores.permute(0, 2, 3, 1).reshape(-1, m)
        kept_min = torch.where(groups, gscores, torch.inf).min(dim=1).values
        dropped_max = torch.where(groups, -torch.inf, gscores).max(dim=1).values
        assert torch.all(kept_min >= dropped_max)
        assert int(pruned.sum()) == scheme.active_count(torch.Size(shape), sparsity)


def test_nm_scored_grow_fills_each_group_to_n_with_best_inactive() -> None:
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2, 0.5, 0.6, 0.7, 0.8, 0.3, 0.3, 0.3, 0.3]])
    mask = torch.tensor([[F, F, F, F, F, F, F, T, T, T, F, F]])  # 0, 1 and 2 active per group
    grown = NMScheme().grow(mask, 0.5, scores=scores)
    expected = torch.tensor([[F, T, T, F, F, F, T, T, T, T, F, F]])
    assert torch.equal(grown, expected)


def test_nm_random_grow_fills_groups_reproducibly() -> None:
    mask = torch.zeros(4, 16, dtype=torch.bool)
    mask[:, 0] = True  # one active weight in the first group of each row
    gen = torch.Generator().manual_seed(5)
    grown = NMScheme().grow(mask, 0.5, generator=gen)
    assert torch.all(grown.reshape(-1, 4).sum(dim=1) == 2)
    assert bool(grown[:, 0].all())
    again = NMScheme().grow(mask, 0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(grown, again)


def test_nm_sparsity_is_fixed() -> None:
    scheme = NMScheme()
    assert scheme.active_count(torch.Size((4, 8)), 0.5) == 16
    assert scheme.active_count(torch.Size((4, 8)), 0.5 + 1e-12) == 16
    with pytest.raises(ValueError, match="fixed sparsity 0.5"):
        scheme.active_count(torch.Size((4, 8)), 0.9)
    with pytest.raises(ValueError, match="fixed sparsity"):
        scheme.prune(torch.ones(4, 8, dtype=torch.bool), torch.ones(4, 8), 0.6)
    assert NMScheme(n=1, m=4).active_count(torch.Size((4, 8)), 0.75) == 8


def test_nm_check_names_the_grouped_dimension() -> None:
    with pytest.raises(ValueError, match=r"\(4, 6, 3, 3\).*\(6\).*divisible by m=4"):
        NMScheme().check(torch.Size((4, 6, 3, 3)))
    # out=6 and kh*kw=9 are fine: only input channels are grouped
    NMScheme().check(torch.Size((6, 4, 3, 3)))
