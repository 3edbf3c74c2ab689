"""The reservoir buffer keeps algorithm R's invariants (mammoth utils/buffer.py, SparCL's Buffer)."""

from __future__ import annotations

import pytest
import torch

from spfde_core.continual.buffer import ReservoirBuffer


def _offer(buffer: ReservoirBuffer, start: int, count: int, seed: int) -> None:
    idx = torch.arange(start, start + count)
    logits = idx.float()[:, None].repeat(1, 3)  # logits[i] = index, so rows stay tied to their example
    buffer.add(idx, idx % 3, logits, torch.Generator().manual_seed(seed))


def test_fills_slots_in_order_then_keeps_size_and_consistent_rows() -> None:
    buffer = ReservoirBuffer(10, 3)
    _offer(buffer, 0, 7, seed=0)
    assert buffer.indices[:7].tolist() == list(range(7)) and buffer.filled == 7  # filling: example i -> slot i
    assert (buffer.indices[7:] == -1).all()
    for step in range(20):
        _offer(buffer, 7 + 8 * step, 8, seed=step + 1)
    assert buffer.num_seen == 167 and buffer.filled == 10
    stored = buffer.indices.tolist()
    assert len(set(stored)) == 10 and all(0 <= i < 167 for i in stored)  # distinct examples actually offered
    assert (buffer.labels == buffer.indices % 3).all()
    assert (buffer.logits[:, 0] == buffer.indices.float()).all()


def test_every_example_is_kept_with_probability_size_over_seen() -> None:
    size, seen, trials = 5, 50, 400
    kept = torch.zeros(seen)
    for trial in range(trials):
        buffer = ReservoirBuffer(size, 3)
        for step in range(seen // 10):
            _offer(buffer, 10 * step, 10, seed=trial * 1000 + step)
        kept[buffer.indices] += 1
    rate = kept / trials
    # size / seen = 0.1 for every example, early and late alike (binomial sd ~ 0.015 per example)
    assert rate.mean().item() == pytest.approx(0.1, abs=1e-6)  # always exactly `size` kept
    assert rate[:10].mean().item() == pytest.approx(0.1, abs=0.03)
    assert rate[-10:].mean().item() == pytest.approx(0.1, abs=0.03)


def test_draw_gives_distinct_filled_slots_and_state_round_trips() -> None:
    buffer = ReservoirBuffer(8, 3)
    _offer(buffer, 0, 5, seed=0)
    slots = buffer.draw(32, torch.Generator().manual_seed(1))
    assert sorted(slots.tolist()) == list(range(5))  # never more than filled, never an empty slot
    _offer(buffer, 5, 30, seed=2)
    copy = ReservoirBuffer(8, 3)
    copy.load_state_dict(buffer.state_dict())
    assert copy.num_seen == 35 and torch.equal(copy.indices, buffer.indices) and torch.equal(copy.logits, buffer.logits)
