"""spfde_circular: ranking, queue moves, constant |P|, the shuffle rule, coverage, determinism."""

from __future__ import annotations

import pytest
import torch
from sieving_test_utils import fake_state, run_epochs, step

from spfde_core.config import ConfigError
from spfde_core.sieving.common import random_split
from spfde_core.sieving.spfde_circular import CircularConfig, CircularQueue, CircularSieving, rank_easiest
from spfde_core.sieving.tracker import ExampleStats


def _hand_stats() -> ExampleStats:
    """Samples 0..6 form P. Interval forgetting events, learned flags and latest losses set by hand."""
    stats = ExampleStats(10)
    stats.interval_presentations[:7] = 5
    stats.interval_forgets[:7] = torch.tensor([2, 0, 0, 0, 1, 0, 0])
    stats.interval_learned[:7] = torch.tensor([True, True, True, False, True, True, True])
    stats.last_loss[:7] = torch.tensor([0.9, 0.5, 0.1, 0.05, 0.2, 0.1, 0.3])
    return stats


def test_rank_easiest_applies_the_documented_order() -> None:
    # zero events & learned: 2 (0.1) and 5 (0.1) tie on loss -> lower index first, then 6 (0.3), 1 (0.5);
    # then 4 (1 event), 0 (2 events); 3 was never correct in the interval -> hardest despite 0 events
    # and the lowest loss.
    order = rank_easiest(_hand_stats(), torch.tensor([6, 5, 4, 3, 2, 1, 0]))
    assert order.tolist() == [2, 5, 6, 1, 4, 0, 3]


def test_unseen_samples_rank_after_learned_and_before_never_learned() -> None:
    stats = _hand_stats()
    stats.interval_presentations[1] = 0
    stats.interval_learned[1] = False
    stats.interval_forgets[1] = 0
    assert rank_easiest(stats, torch.arange(7)).tolist() == [2, 5, 6, 4, 0, 1, 3]


def test_never_learned_in_the_interval_is_hardest_even_if_learned_before() -> None:
    stats = ExampleStats(3)
    for flags in ([1, 1, 1], [1, 1, 1]):  # interval 1: all learned
        stats.update(torch.arange(3), torch.tensor([0.1, 0.2, 0.3]), torch.tensor(flags, dtype=torch.bool))
    stats.reset_interval()
    for _ in range(2):  # interval 2: sample 0 always wrong (0 events, ever learned), others right
        stats.update(torch.arange(3), torch.tensor([0.01, 0.2, 0.3]), torch.tensor([0, 1, 1], dtype=torch.bool))
    assert rank_easiest(stats, torch.arange(3)).tolist() == [1, 2, 0]


def test_swap_moves_easiest_to_the_tail_and_takes_the_head() -> None:
    queue = CircularQueue(torch.tensor([7, 8, 9]), 10)
    easiest = rank_easiest(_hand_stats(), queue.partial)[:2]
    taken = queue.swap(easiest)
    assert easiest.tolist() == [2, 5]
    assert taken.tolist() == [7, 8]
    assert queue.queue.tolist() == [9, 2, 5]
    assert queue.partial.tolist() == [0, 1, 3, 4, 6, 7, 8]
    assert queue.partial_size == 7
    with pytest.raises(ValueError, match="distinct members"):
        queue.swap(torch.tensor([9]))  # not in P


def test_shuffle_starts_exactly_when_the_initial_queue_has_been_retrieved() -> None:
    initial = torch.tensor([15, 3, 11, 7, 19])
    queue = CircularQueue(initial, 20)
    expected = initial.tolist()
    for i, easiest in enumerate(([0, 1], [2, 4], [5, 6], [8, 9])):
        gen = torch.Generator().manual_seed(100 + i)
        expected = expected + easiest
        taken = queue.swap(torch.tensor(easiest), gen)
        assert taken.tolist() == expected[:2]
        expected = expected[2:]
        retrieved = 2 * (i + 1)
        assert queue.cycled == (retrieved >= 5)
        if retrieved < 5:
            assert queue.queue.tolist() == expected  # pure FIFO until then
        else:
            fifo = expected
            perm = torch.randperm(len(expected), generator=torch.Generator().manual_seed(100 + i))
            expected = torch.tensor(expected)[perm].tolist()
            assert expected != fifo  # the generator really reorders, so the check below can fail
            assert queue.queue.tolist() == expected
        assert queue.partial_size == 15


def _sieving(num_samples=40, seed=0, **kw) -> tuple[CircularSieving, object]:
    state = fake_state(num_samples, seed=seed)
    cfg = CircularConfig(**{"remove_fraction": 0.25, "update_every_epochs": 2, "swap_fraction": 0.1, **kw})
    return CircularSieving(cfg, state), state


def _easy_is_low_index(epoch: int, idx: torch.Tensor):
    """Adversarial stats: always correct, loss = index, so the same low indices are always 'easiest'."""
    return torch.ones(len(idx), dtype=torch.bool), idx.float()


def test_updates_keep_p_constant_and_use_every_sample_over_a_long_run() -> None:
    sieving, state = _sieving()
    assert (sieving.queue.partial_size, sieving.swap_count) == (30, 3)
    actives = run_epochs(sieving, state, 30, _easy_is_low_index)
    assert all(a.numel() == 30 for a in actives)
    assert [u["epoch"] for u in sieving.updates] == list(range(2, 30, 2))
    assert all(u["swaps"] == 3 for u in sieving.updates)
    used = torch.zeros(40, dtype=torch.bool)
    for a in actives:
        used[a] = True
    assert bool(used.all())  # 10 initially removed, 3 retrieved per update: cycled at the 4th update
    assert sieving.cycled_at_epoch == 8
    assert [u["shuffled"] for u in sieving.updates][:5] == [False, False, False, True, True]
    # Epochs between updates keep P; update epochs change exactly swap_count members.
    for epoch in range(1, 30):
        changed = len(set(actives[epoch].tolist()) - set(actives[epoch - 1].tolist()))
        assert changed == (3 if epoch % 2 == 0 else 0)


def test_the_first_update_moves_the_easiest_of_p_to_the_tail_of_r() -> None:
    sieving, state = _sieving()
    removed, kept = random_split(0, 40, 10)
    assert sieving.queue.queue.tolist() == removed.tolist()
    run_epochs(sieving, state, 3, _easy_is_low_index)  # update at epoch 2
    easiest = kept[:3].tolist()  # all learned, no events: lowest loss = lowest index
    assert sieving.queue.queue.tolist() == removed[3:].tolist() + easiest
    assert set(state.train_loader.indices().tolist()) == (set(kept.tolist()) - set(easiest)) | set(removed[:3].tolist())
    assert state.epoch_log == {"sieving_active": 30, "sieving_swaps": 3}  # epoch 2's log


def test_interval_statistics_are_reset_at_each_update() -> None:
    sieving, state = _sieving(start_epoch=3, update_every_epochs=3)

    def alternating(epoch, idx):  # right at even epochs, wrong at odd ones
        return torch.full((len(idx),), epoch % 2 == 0), torch.zeros(len(idx))

    actives = run_epochs(sieving, state, 5, alternating)  # interval [0, 3), update + reset at 3, then 3..4
    # The update at epoch 3 saw interval [0, 3): right, wrong, right = one event per sample of P.
    assert sieving.updates[0]["partial_mean_interval_forgets"] == 1.0
    stayed = sorted(set(actives[0].tolist()) & set(actives[3].tolist()))
    stats = sieving.stats
    # Since the reset: epochs 3 (wrong) and 4 (right); epoch 2 right -> epoch 3 wrong spans the boundary.
    assert set(stats.interval_presentations[stayed].tolist()) == {2}
    assert set(stats.interval_forgets[stayed].tolist()) == {0}
    assert set(stats.forgets[stayed].tolist()) == {2}  # epochs 0->1 and 2->3 over the whole history


def test_same_seed_same_run_and_other_seed_other_split() -> None:
    a, sa = _sieving(seed=3)
    b, sb = _sieving(seed=3)
    c, _ = _sieving(seed=4)
    assert torch.equal(a.queue.queue, b.queue.queue)
    assert not torch.equal(a.queue.queue, c.queue.queue)

    def noisy(epoch, idx):
        g = torch.Generator().manual_seed(epoch)
        return torch.rand(len(idx), generator=g) < 0.7, torch.rand(len(idx), generator=g)

    run_epochs(a, sa, 15, noisy)
    run_epochs(b, sb, 15, noisy)
    assert torch.equal(a.queue.queue, b.queue.queue) and a.updates == b.updates


def test_state_dict_resumes_exactly() -> None:
    def noisy(epoch, idx):
        g = torch.Generator().manual_seed(epoch)
        return torch.rand(len(idx), generator=g) < 0.6, torch.rand(len(idx), generator=g)

    whole, ws = _sieving()
    run_epochs(whole, ws, 12, noisy)
    first, fs = _sieving()
    run_epochs(first, fs, 7, noisy)
    resumed, rs = _sieving()
    resumed.load_state_dict(first.state_dict())
    for epoch in range(7, 12):
        rs.epoch, rs.epoch_log = epoch, {}
        resumed.on_epoch_start(rs)
        idx = rs.train_loader.indices()
        correct, losses = noisy(epoch, idx)
        resumed.after_step(rs, step(idx, correct, losses))
    assert torch.equal(resumed.queue.queue, whole.queue.queue) and resumed.updates == whole.updates


def test_swap_fraction_of_dataset_and_bad_configs() -> None:
    sieving, _ = _sieving(swap_fraction=0.1, swap_fraction_of="dataset")
    assert sieving.swap_count == 4
    with pytest.raises(ConfigError, match="sieving.swap_fraction"):
        _sieving(swap_fraction=0.5)  # 15 swaps > |R| = 10
    with pytest.raises(ConfigError, match="sieving.remove_fraction"):
        _sieving(remove_fraction=0.0)
    with pytest.raises(ConfigError, match="sieving.swap_fraction_of"):
        _sieving(swap_fraction_of="removed")
