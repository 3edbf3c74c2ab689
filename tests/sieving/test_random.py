"""random_fixed / random_redraw: subset size, fixed vs re-drawn, determinism, shared initial split."""

from __future__ import annotations

import pytest
import torch
from sieving_test_utils import fake_state, run_epochs

from spfde_core.config import ConfigError
from spfde_core.sieving.random import RandomSubset, RandomSubsetConfig
from spfde_core.sieving.spfde_circular import CircularConfig, CircularSieving


def _always(epoch, idx):
    return torch.ones(len(idx), dtype=torch.bool), torch.zeros(len(idx))


def _run(name: str, every: int, seed: int = 0, epochs: int = 9) -> list[torch.Tensor]:
    state = fake_state(50, seed=seed)
    method = RandomSubset(RandomSubsetConfig(name=name, remove_fraction=0.2, redraw_every_epochs=every), state)
    return run_epochs(method, state, epochs, _always)


def test_fixed_subset_never_changes() -> None:
    actives = _run("random_fixed", 0)
    assert all(a.numel() == 40 for a in actives)
    assert all(torch.equal(a, actives[0]) for a in actives)
    assert not torch.equal(actives[0], _run("random_fixed", 0, seed=1)[0])


def test_redraw_changes_the_subset_exactly_every_k_epochs() -> None:
    actives = _run("random_redraw", 3)
    assert all(a.numel() == 40 for a in actives)
    for epoch in range(1, 9):
        same = torch.equal(actives[epoch], actives[epoch - 1])
        assert same == (epoch % 3 != 0), epoch
    assert all(torch.equal(a, b) for a, b in zip(actives, _run("random_redraw", 3), strict=True))


def test_draw_zero_is_the_circular_initial_partial_set() -> None:
    state = fake_state(50, seed=5)
    circular = CircularSieving(CircularConfig(remove_fraction=0.2, swap_fraction=0.1), state)
    assert torch.equal(_run("random_fixed", 0, seed=5, epochs=1)[0], circular.queue.partial)


def test_name_and_redraw_setting_must_agree() -> None:
    with pytest.raises(ConfigError, match="redraw_every_epochs"):
        RandomSubset(RandomSubsetConfig(name="random_fixed", redraw_every_epochs=2), fake_state(10))
    with pytest.raises(ConfigError, match="redraw_every_epochs"):
        RandomSubset(RandomSubsetConfig(name="random_redraw", redraw_every_epochs=0), fake_state(10))
