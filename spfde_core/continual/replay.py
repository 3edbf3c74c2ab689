"""Rehearsal losses on buffer batches: ER, DER and DER++ as SparCL's script adds them.

``train()`` in ``main_sparse_train_w_data_gradient_efficient.py``, for tasks t > 0 with a non-empty buffer,
adds per sample to the current batch's (masked) CE, then averages over the batch:

- ``er``: ``buffer_weight`` x CE(model(x_buf), y_buf) on one buffer batch;
- ``der``: ``buffer_weight`` x mean over classes of (model(x_buf) - z_buf)^2 on one buffer batch;
- ``derpp``: the DER term on one batch plus ``buffer_weight_beta`` x CE on a second, independent batch.

Buffer batches have the current batch's size and are never logit-masked. Because every term is a mean over
the same batch size, mean(a + alpha b + beta c) = mean(a) + alpha mean(b) + beta mean(c): the harness
back-propagates this sum after the trainer's own backward (gradients accumulate), the same gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from spfde_core.continual.buffer import ReservoirBuffer
from spfde_core.data.types import Batch

REPLAY_LOSSES = {
    "none": "none",
    "er": "alpha x CE on one buffer batch (the script's unmerged ER branch; as shipped, its ER path reads an "
    "undefined args.merge_batch and stops at the first replay step)",
    "der": "alpha x per-sample mean squared error to the stored logits on one buffer batch (script)",
    "derpp": "alpha x DER's MSE on one buffer batch + beta x CE on a second, independent one (script)",
}
"""What each ``continual.replay`` adds to the current batch's loss, as recorded in ``choices()``."""


def buffer_passes(replay: str) -> int:
    """Buffer batches forwarded and back-propagated per step (the cost meter's extra passes)."""
    return {"none": 0, "er": 1, "der": 1, "derpp": 2}[replay]


def replay_loss(
    model: torch.nn.Module,
    replay: str,
    buffer: ReservoirBuffer,
    make_batch: Callable[[torch.Tensor, torch.Generator], Batch],
    batch_size: int,
    alpha: float,
    beta: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, int]:
    """The buffer term of one step and the number of buffer samples forwarded.

    ``make_batch(slots, generator) -> Batch`` turns buffer slots into an augmented batch (draw order:
    slots, then the augmentation of that batch, per buffer batch).
    """
    loss = torch.zeros((), device=buffer.device)
    seen = 0

    def draw() -> tuple[Batch, torch.Tensor]:
        slots = buffer.draw(batch_size, generator)
        return make_batch(buffer.indices[slots], generator), slots

    if replay == "er":
        batch, slots = draw()
        loss = loss + alpha * F.cross_entropy(model(batch.images).float(), buffer.labels[slots])
        seen += len(slots)
    if replay in ("der", "derpp"):
        batch, slots = draw()
        out = model(batch.images).float()
        loss = loss + alpha * F.mse_loss(out, buffer.logits[slots], reduction="none").mean(-1).mean()
        seen += len(slots)
    if replay == "derpp":
        batch, slots = draw()
        loss = loss + beta * F.cross_entropy(model(batch.images).float(), buffer.labels[slots])
        seen += len(slots)
    return loss, seen
