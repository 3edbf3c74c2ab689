"""mest_forgetting: counts, ascending order with seeded random ties, the removed slice, once at E, stats cleared."""

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
    tie_generator,
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


def test_order_is_ascending_by_count_with_ties_in_seeded_random_order() -> None:
    counts = torch.tensor(COUNTS)
    order = removal_order(counts, tie_generator(0, "k")).tolist()
    assert set(order[:2]) == {0, 5} and set(order[2:6]) == {3, 4, 6, 7} and order[6:] == [1, 2]
    assert order == removal_order(counts, tie_generator(0, "k")).tolist()  # a resume draws the same ties
    removed = removed_indices(counts, 1, 3, tie_generator(0, "k")).tolist()
    assert removed == order[1:4]


def test_ties_are_not_broken_by_index_order_which_is_class_order() -> None:
    """Prepared datasets are stored class by class: index order among equal counts would be class order."""
    counts = torch.zeros(1000, dtype=torch.int64)  # all unforgettable, e.g. class 0 = 0..499, class 1 = 500..999
    counts[:10] = 3  # a few forgotten examples of class 0 go last
    for seed in range(3):
        removed = removed_indices(counts, 0, 500, tie_generator(seed, "k"))
        from_class_0 = int((removed < 500).sum())
        assert 200 < from_class_0 < 300, from_class_0  # binomial(500, 490/990) ~ 247 +- 11; index order: 500
        assert not bool(torch.isin(torch.arange(10), removed).any())  # the forgotten ones are never among them
    orders = {tuple(removal_order(counts, tie_generator(seed, "k"))[:20].tolist()) for seed in range(3)}
    assert len(orders) == 3  # the tie order depends on the run seed


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
    removed = sorted(set(range(8)) - set(actives[4].tolist()))
    # positions 1..3 of the order: one of the two count-0 examples {0, 5}, two of the count-1 ones {3, 4, 6, 7}
    assert len(removed) == 3 and len(set(removed) & {0, 5}) == 1 and len(set(removed) & {3, 4, 6, 7}) == 2
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
