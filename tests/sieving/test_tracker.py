"""ExampleStats: forgetting events, interval counts and reset, never-learned flags, checkpointing."""

from __future__ import annotations

import torch

from spfde_core.sieving.tracker import ExampleStats


def _feed(stats: ExampleStats, sample: int, flags: list[int], losses: list[float] | None = None) -> None:
    for i, flag in enumerate(flags):
        loss = torch.tensor([losses[i] if losses else float(i)])
        stats.update(torch.tensor([sample]), loss, torch.tensor([bool(flag)]))


def test_forgetting_events_are_one_to_zero_transitions_between_presentations() -> None:
    stats = ExampleStats(4)
    _feed(stats, 0, [1, 0, 1, 1, 0])  # 2 events
    _feed(stats, 1, [0, 0, 1, 1, 1])  # learned late, never forgotten
    _feed(stats, 2, [0, 1, 0, 1, 0, 0, 1, 0], losses=[1, 2, 3, 4, 5, 6, 7, 0.25])  # 3 events
    assert stats.forgets.tolist() == [2, 0, 3, 0]
    assert stats.interval_forgets.tolist() == [2, 0, 3, 0]  # one interval so far
    assert stats.presentations.tolist() == [5, 5, 8, 0]
    assert stats.ever_learned.tolist() == [True, True, True, False]
    assert stats.last_correct.tolist() == [False, True, False, False]
    assert stats.last_loss[2].item() == 0.25 and torch.isnan(stats.last_loss[3])


def test_a_batch_updates_each_of_its_samples() -> None:
    stats = ExampleStats(5)
    seq = [[1, 1, 0, 0, 1], [0, 1, 1, 0, 1], [1, 0, 1, 0, 0]]  # per presentation, samples 0..4
    for flags in seq:
        stats.update(torch.arange(5), torch.zeros(5), torch.tensor(flags, dtype=torch.bool))
    # sample 0: 1,0,1 -> 1; sample 1: 1,1,0 -> 1; sample 2: 0,1,1 -> 0; sample 3: 0,0,0; sample 4: 1,1,0 -> 1
    assert stats.forgets.tolist() == [1, 1, 0, 0, 1]
    assert stats.ever_learned.tolist() == [True, True, True, False, True]


def test_interval_counts_reset_and_never_span_the_boundary() -> None:
    stats = ExampleStats(3)
    _feed(stats, 0, [1, 0, 1])  # 1 event in interval 1
    _feed(stats, 1, [1, 1])
    _feed(stats, 2, [0, 0])
    stats.reset_interval()
    assert stats.interval_forgets.tolist() == [0, 0, 0]
    assert stats.interval_learned.tolist() == [False, False, False]
    _feed(stats, 0, [1, 1, 0])  # +1 in interval 2
    _feed(stats, 1, [0, 1])  # 1 -> 0 across the boundary: a total event, not an interval one
    _feed(stats, 2, [1])
    assert stats.interval_forgets.tolist() == [1, 0, 0]
    assert stats.forgets.tolist() == [2, 1, 0]
    assert stats.interval_presentations.tolist() == [3, 2, 1]
    assert stats.presentations.tolist() == [6, 4, 3]
    assert stats.interval_learned.tolist() == [True, True, True]
    assert stats.ever_learned.tolist() == [True, True, True]


def test_interval_learned_is_per_interval_and_ever_learned_is_not() -> None:
    stats = ExampleStats(1)
    _feed(stats, 0, [1, 1])
    stats.reset_interval()
    _feed(stats, 0, [0, 0])
    assert stats.ever_learned.tolist() == [True] and stats.interval_learned.tolist() == [False]


def test_clear_and_state_dict_round_trip() -> None:
    stats = ExampleStats(3)
    _feed(stats, 1, [1, 0, 1, 0])
    again = ExampleStats(3)
    again.load_state_dict(stats.state_dict())
    for name in ("forgets", "presentations", "interval_forgets", "ever_learned", "last_correct"):
        assert torch.equal(getattr(again, name), getattr(stats, name))
    assert torch.equal(again.last_loss.nan_to_num(-1), stats.last_loss.nan_to_num(-1))
    stats.clear()
    assert int(stats.forgets.sum()) == 0 and int(stats.presentations.sum()) == 0
    assert not bool(stats.ever_learned.any()) and bool(torch.isnan(stats.last_loss).all())
