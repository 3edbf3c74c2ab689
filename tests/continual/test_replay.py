"""ER, DER and DER++ buffer terms against a hand computation (SparCL script's ``train()``, mammoth's losses)."""

from __future__ import annotations

import math

import pytest
import torch

from spfde_core.continual.buffer import ReservoirBuffer
from spfde_core.continual.replay import buffer_passes, replay_loss
from spfde_core.data.types import Batch

NUM_CLASSES, FEATURES, STORED = 3, 4, 6
ALPHA, BETA = 0.1, 0.5


def _setup() -> tuple[torch.nn.Module, ReservoirBuffer, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, NUM_CLASSES)
    inputs = torch.randn(10, FEATURES)  # the "dataset": sample i's input is row i
    buffer = ReservoirBuffer(STORED, NUM_CLASSES)
    indices = torch.tensor([7, 2, 9, 0, 5, 3])
    buffer.add(indices, indices % NUM_CLASSES, torch.randn(STORED, NUM_CLASSES), torch.Generator().manual_seed(1))
    return model, buffer, inputs


def _make_batch(inputs: torch.Tensor):  # the harness's make_batch, without augmentation
    return lambda sample_indices, generator: Batch(inputs[sample_indices], torch.zeros(0), sample_indices)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over samples of -log softmax(logits)[label], written out."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        log_norm = math.log(sum(math.exp(v) for v in row))
        total += log_norm - row[label]
    return total / len(labels)


def _squared_error(logits: torch.Tensor, stored: torch.Tensor) -> float:
    """Mean over samples of the mean over classes of (logit - stored logit)^2, written out."""
    rows = [
        sum((a - b) ** 2 for a, b in zip(x, z, strict=True)) / NUM_CLASSES
        for x, z in zip(logits.tolist(), stored.tolist(), strict=True)
    ]
    return sum(rows) / len(rows)


@pytest.mark.parametrize("replay", ["er", "der", "derpp"])
def test_buffer_terms_match_a_hand_computation(replay: str) -> None:
    model, buffer, inputs = _setup()
    batch_size = 4
    loss, seen = replay_loss(
        model, replay, buffer, _make_batch(inputs), batch_size, ALPHA, BETA, torch.Generator().manual_seed(5)
    )
    # the same draws by hand: one buffer batch (ER, DER), or two independent ones (DER++: DER's, then CE's)
    gen = torch.Generator().manual_seed(5)
    draws = [buffer.draw(batch_size, gen) for _ in range(buffer_passes(replay))]
    with torch.no_grad():
        outputs = [model(inputs[buffer.indices[slots]]) for slots in draws]
    if replay == "er":
        expected = ALPHA * _cross_entropy(outputs[0], buffer.labels[draws[0]])
    else:
        expected = ALPHA * _squared_error(outputs[0], buffer.logits[draws[0]])
    if replay == "derpp":
        expected += BETA * _cross_entropy(outputs[1], buffer.labels[draws[1]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert seen == batch_size * buffer_passes(replay)
    assert len({tuple(d.tolist()) for d in draws}) == len(draws)  # DER++'s two batches are drawn independently


def test_replay_loss_trains_the_model_and_none_adds_nothing() -> None:
    model, buffer, inputs = _setup()
    loss, _ = replay_loss(model, "derpp", buffer, _make_batch(inputs), 4, ALPHA, BETA, torch.Generator())
    loss.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0
    none, seen = replay_loss(model, "none", buffer, _make_batch(inputs), 4, ALPHA, BETA, torch.Generator())
    assert none.item() == 0 and seen == 0 and buffer_passes("none") == 0
