"""Properties every sparsity scheme must have (base.py contract), checked on all five schemes.

Scheme-specific hand-built cases live in test_schemes_{units,nm,pattern}.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from spfde_core.sparsity.schemes import (
    SCHEMES,
    BlockScheme,
    ChannelScheme,
    NMScheme,
    PatternScheme,
    Scheme,
    UnstructuredScheme,
    get_scheme,
)


@dataclass(frozen=True)
class Case:
    scheme: Scheme
    shape: tuple[int, ...]
    start: float
    """Sparsity of the (non-dense) mask prune starts from; ignored for nm (see start_mask)."""
    prune_to: float
    grow_to: float


CASES = {
    "unstructured": Case(UnstructuredScheme(), (8, 6, 3, 3), 0.5, 0.9, 0.8),
    "block": Case(BlockScheme(), (8, 6, 3, 3), 0.5, 0.9, 0.8),
    "channel": Case(ChannelScheme(), (16, 4, 3, 3), 0.25, 0.75, 0.5),
    "nm": Case(NMScheme(), (4, 8, 3, 3), 0.5, 0.5, 0.5),
    "pattern": Case(PatternScheme(), (6, 16, 3, 3), 0.6, 0.9, 0.8),
}
IDS = list(CASES)


def _scores(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def start_mask(case: Case) -> torch.Tensor:
    """A non-dense mask of the scheme's own shape, denser than ``prune_to``."""
    dense = torch.ones(case.shape, dtype=torch.bool)
    if isinstance(case.scheme, NMScheme):
        # 3 of every 4 input channels active (channel c % 4 == 1 dropped): every group has 3 > 2.
        mask = dense.clone()
        mask[:, 1::4] = False
        return mask
    return case.scheme.prune(dense, _scores(case.shape, 1), case.start)


def sparse_mask(case: Case) -> torch.Tensor:
    """A mask of the scheme's shape with fewer active weights than ``active_count(grow_to)``."""
    mask = case.scheme.prune(start_mask(case), _scores(case.shape, 2), case.prune_to)
    if isinstance(case.scheme, NMScheme):
        mask[: case.shape[0] // 2] = False  # empty half the filters: their groups must be refilled
    return mask


def _is_subset(a: torch.Tensor, b: torch.Tensor) -> bool:
    return not bool((a & ~b).any())


@pytest.mark.parametrize("name", IDS)
def test_prune_is_subset_with_exact_count(name: str) -> None:
    case = CASES[name]
    mask = start_mask(case)
    pruned = case.scheme.prune(mask, _scores(case.shape, 3), case.prune_to)
    assert pruned.dtype == torch.bool and pruned.shape == mask.shape
    assert _is_subset(pruned, mask)
    assert int(pruned.sum()) == case.scheme.active_count(torch.Size(case.shape), case.prune_to)
    assert int(pruned.sum()) < int(mask.sum())


@pytest.mark.parametrize("name", IDS)
def test_prune_from_dense_reaches_exact_count(name: str) -> None:
    case = CASES[name]
    dense = torch.ones(case.shape, dtype=torch.bool)
    pruned = case.scheme.prune(dense, _scores(case.shape, 4), case.prune_to)
    assert int(pruned.sum()) == case.scheme.active_count(torch.Size(case.shape), case.prune_to)


@pytest.mark.parametrize("name", IDS)
def test_prune_leaves_a_sparse_enough_mask_unchanged(name: str) -> None:
    case = CASES[name]
    mask = sparse_mask(case)
    again = case.scheme.prune(mask, _scores(case.shape, 5), case.prune_to)
    assert torch.equal(again, mask)
    assert again is not mask  # a new tensor: callers may edit it in place


@pytest.mark.parametrize("name", IDS)
def test_random_grow_is_superset_exact_and_reproducible(name: str) -> None:
    case = CASES[name]
    mask = sparse_mask(case)
    target = case.scheme.active_count(torch.Size(case.shape), case.grow_to)
    assert int(mask.sum()) < target

    grown = case.scheme.grow(mask, case.grow_to, generator=torch.Generator().manual_seed(0))
    assert _is_subset(mask, grown)  # superset: only previously inactive positions were activated
    assert int(grown.sum()) == target

    same = case.scheme.grow(mask, case.grow_to, generator=torch.Generator().manual_seed(0))
    other = case.scheme.grow(mask, case.grow_to, generator=torch.Generator().manual_seed(1))
    assert torch.equal(grown, same)
    assert not torch.equal(grown, other)
    assert int(other.sum()) == target


@pytest.mark.parametrize("name", IDS)
def test_scored_grow_is_superset_with_exact_count(name: str) -> None:
    case = CASES[name]
    mask = sparse_mask(case)
    grown = case.scheme.grow(mask, case.grow_to, scores=_scores(case.shape, 6))
    assert _is_subset(mask, grown)
    assert int(grown.sum()) == case.scheme.active_count(torch.Size(case.shape), case.grow_to)


@pytest.mark.parametrize("name", IDS)
def test_grow_leaves_a_dense_enough_mask_unchanged(name: str) -> None:
    case = CASES[name]
    mask = case.scheme.grow(sparse_mask(case), case.grow_to, generator=torch.Generator().manual_seed(0))
    again = case.scheme.grow(mask, case.grow_to, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, mask)


@pytest.mark.parametrize("name", IDS)
def test_prune_does_not_modify_its_inputs(name: str) -> None:
    case = CASES[name]
    mask, scores = start_mask(case), _scores(case.shape, 7)
    mask_copy, scores_copy = mask.clone(), scores.clone()
    case.scheme.prune(mask, scores, case.prune_to)
    case.scheme.grow(mask, case.grow_to, scores=scores)
    assert torch.equal(mask, mask_copy) and torch.equal(scores, scores_copy)


BAD_SHAPES = {
    "unstructured": [(0, 3)],
    "block": [(6, 3), (6, 2, 3, 3), (8,)],
    "channel": [(5,)],
    "nm": [(4, 6, 3, 3), (4, 6), (4, 8, 3)],
    "pattern": [(8, 16, 5, 5), (8, 16), (8, 16, 3, 1)],
}


@pytest.mark.parametrize(("name", "shape"), [(n, s) for n, shapes in BAD_SHAPES.items() for s in shapes])
def test_check_rejects_bad_shapes_naming_them(name: str, shape: tuple[int, ...]) -> None:
    scheme = get_scheme(name)
    with pytest.raises(ValueError) as info:
        scheme.check(torch.Size(shape))
    assert str(tuple(shape)) in str(info.value)
    # prune goes through the same check
    with pytest.raises(ValueError):
        scheme.prune(torch.ones(shape, dtype=torch.bool), torch.ones(shape), 0.9)


@pytest.mark.parametrize("name", IDS)
def test_check_accepts_the_case_shape(name: str) -> None:
    CASES[name].scheme.check(torch.Size(CASES[name].shape))


@pytest.mark.parametrize("name", IDS)
def test_bad_inputs_are_rejected(name: str) -> None:
    case = CASES[name]
    mask, scores = start_mask(case), _scores(case.shape)
    with pytest.raises(ValueError, match="bool"):
        case.scheme.prune(mask.float(), scores, case.prune_to)
    with pytest.raises(ValueError, match="does not match"):
        case.scheme.prune(mask, scores.flatten(), case.prune_to)
    with pytest.raises(ValueError, match="non-negative"):
        case.scheme.prune(mask, scores - 1.0, case.prune_to)
    with pytest.raises(ValueError, match="non-negative"):
        case.scheme.grow(mask, case.grow_to, scores=scores.fill_(float("nan")))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            case.scheme.active_count(torch.Size(case.shape), bad)


def test_registry_names_match_classes() -> None:
    assert SCHEMES.names() == ["block", "channel", "nm", "pattern", "unstructured"]
    for name in SCHEMES:
        assert get_scheme(name).name == name


def test_get_scheme_passes_params() -> None:
    assert get_scheme("block", block_size=2).block_size == 2
    nm = get_scheme("nm", n=1, m=4)
    assert (nm.n, nm.m) == (1, 4)
    assert nm.active_count(torch.Size((2, 8)), 0.75) == 4


def test_get_scheme_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="block, channel, nm, pattern, unstructured"):
        get_scheme("irregular")


def test_get_scheme_bad_params_list_accepted() -> None:
    with pytest.raises(TypeError, match="accepts: block_size"):
        get_scheme("block", size=4)
    with pytest.raises(TypeError, match=r"accepts: \(none\)"):
        get_scheme("pattern", block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        get_scheme("block", block_size=0)
    with pytest.raises(ValueError, match="n <= m"):
        get_scheme("nm", n=5, m=4)
