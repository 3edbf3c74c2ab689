"""mest_forgetting: counts, stable ascending order, the removed slice, once at epoch E, stats cleared."""

from __future__ import annotations

import pytest
import torch
from sieving_test_utils import fake_state, run_epochs

from spfde_core.config import ConfigError
from spfde_core.sieving.mest_forgetting import (
    MestForgetting,
    MestForgettingConfig,
    forgetting_counts,
    removal_order,
    removed_indices,
)
from spfde_core.sieving.tracker import ExampleStats

# Correctness per presentation (columns) of samples 0..7 and their MEST counts (never learned = epochs = 10).
FLAGS = [
    [1, 1, 1, 1],  # 0 events
    [1, 0, 1, 0],  # 2
    [0, 0, 0, 0],  # never learned -> 10
    [0, 1, 0, 1],  # 1
    [1, 1, 0, 0],  # 1
    [0, 1, 1, 1],  # 0
    [1, 0, 1, 1],  # 1
    [0, 0, 1, 0],  # 1
]
COUNTS = [0, 2, 10, 1, 1, 0, 1, 1]


def _stats() -> ExampleStats:
    stats = ExampleStats(8)
    flags = torch.tensor(FLAGS, dtype=torch.bool)
    for t in range(4):
        stats.update(torch.arange(8), torch.zeros(8), flags[:, t])
    return stats


def test_counts_give_never_learned_the_epoch_count() -> None:
    assert forgetting_counts(_stats(), never_learned_count=10).tolist() == COUNTS


def test_order_is_a_stable_ascending_sort_and_the_slice_is_removed() -> None:
    counts = torch.tensor(COUNTS)
    assert removal_order(counts).tolist() == [0, 5, 3, 4, 6, 7, 1, 2]  # ties by index, never-learned last
    assert removed_indices(counts, keep_lowest_n=0, remove_n=3).tolist() == [0, 5, 3]
    assert removed_indices(counts, keep_lowest_n=1, remove_n=3).tolist() == [5, 3, 4]
    assert removed_indices(counts, keep_lowest_n=5, remove_n=3).tolist() == [7, 1, 2]


def _method(**kw) -> tuple[MestForgetting, object]:
    state = fake_state(8, epochs=10)
    return MestForgetting(MestForgettingConfig(**{"remove_n": 3, "keep_lowest_n": 1, **kw}), state), state


def test_removal_happens_once_at_epoch_e_from_the_presentations_before_it() -> None:
    method, state = _method(remove_epoch=4)
    flags = torch.tensor(FLAGS, dtype=torch.bool)

    def stats_fn(epoch, idx):  # the hand-made flags for epochs 0..3, then everything wrong
        return (flags[idx, epoch] if epoch < 4 else torch.zeros(len(idx), dtype=torch.bool)), torch.zeros(len(idx))

    actives = run_epochs(method, state, 7, stats_fn)
    assert [a.numel() for a in actives] == [8, 8, 8, 8, 5, 5, 5]
    assert actives[4].tolist() == [0, 1, 2, 6, 7]  # [5, 3, 4] removed
    assert all(torch.equal(a, actives[4]) for a in actives[5:])
    assert method.stats is None  # cleared after the removal
    assert method.summary["unforgettable"] == 2 and method.summary["never_learned"] == 1
    assert method.summary["removed_count_range"] == [0, 1]


def test_remove_epoch_and_count_defaults_scale_with_the_budget() -> None:
    state = fake_state(50_000, epochs=160)
    method = MestForgetting(MestForgettingConfig(), state)
    assert (method.remove_n, method.remove_epoch) == (12_000, 70)
    method = MestForgetting(MestForgettingConfig(), fake_state(512, epochs=8))
    assert (method.remove_n, method.remove_epoch) == (123, 4)  # 0.24 * 512 = 122.9; 0.4375 * 8 = 3.5 -> 4


def test_state_dict_round_trip_before_and_after_removal() -> None:
    method, state = _method(remove_epoch=2)
    run_epochs(method, state, 2, lambda e, idx: (torch.tensor(FLAGS, dtype=torch.bool)[idx, e], torch.zeros(len(idx))))
    again, _ = _method(remove_epoch=2)
    again.load_state_dict(method.state_dict())
    assert torch.equal(again.stats.forgets, method.stats.forgets)
    method.remove()
    again.load_state_dict(method.state_dict())
    assert again.stats is None and torch.equal(again.kept, method.kept)


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ConfigError, match="sieving.remove_n"):
        _method(remove_n=8)
    with pytest.raises(ConfigError, match="sieving.remove_epoch"):
        _method(remove_epoch=10)
