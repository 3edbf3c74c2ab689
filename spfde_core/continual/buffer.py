"""The rehearsal buffer: reservoir sampling over every training example seen (mammoth ``utils/buffer.py``).

SparCL's script keeps mammoth's ``Buffer``: ``add_data`` after every optimiser step with the batch's
*un-augmented* inputs, labels and the model's (unmasked) logits; slot choice by reservoir sampling
(Vitter's algorithm R: the i-th example seen, 0-based, takes slot i while the buffer fills, afterwards a
uniform slot in [0, i] if that is < size, else it is dropped); ``get_data(n)`` draws n distinct slots
uniformly and applies the training transform (random crop + flip) to them.

Here the buffer stores *sample indices* into the training split instead of pixels (the split stays in
memory in ``TensorLoader``): the same images, a smaller checkpoint. Randomness comes from generators that
are pure functions of (run seed, step), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import torch


class ReservoirBuffer:
    """``size`` slots of (sample index, label, logits); ``num_seen`` examples offered so far."""

    def __init__(self, size: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        if size < 0:
            raise ValueError(f"buffer size must be >= 0, got {size}")
        self.size = int(size)
        self.device = torch.device(device)
        self.indices = torch.full((size,), -1, dtype=torch.int64, device=self.device)
        self.labels = torch.full((size,), -1, dtype=torch.int64, device=self.device)
        self.logits = torch.zeros(size, num_classes, device=self.device)
        self.num_seen = 0

    @property
    def filled(self) -> int:
        return min(self.num_seen, self.size)

    def slots_for(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Reservoir slot (or -1: dropped) of each of the next ``count`` examples, in order (algorithm R)."""
        seen = self.num_seen + torch.arange(count)
        draws = (torch.rand(count, generator=generator, dtype=torch.float64) * (seen + 1)).floor().long()
        slots = torch.where(seen < self.size, seen, draws)  # filling: slot i; then uniform in [0, i]
        return torch.where(slots < self.size, slots, torch.full_like(slots, -1))

    def add(
        self, indices: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, generator: torch.Generator
    ) -> None:
        """Offer a batch (in batch order); later examples overwrite earlier ones that drew the same slot."""
        slots = self.slots_for(len(indices), generator)
        winners: dict[int, int] = {}
        for i, slot in enumerate(slots.tolist()):  # sequential, as mammoth's loop: a later draw wins a slot
            if slot >= 0:
                winners[slot] = i
        if winners:  # one write per tensor (no per-sample kernel launches on a GPU), slots unique
            dst = torch.tensor(list(winners), dtype=torch.int64, device=self.device)
            src = torch.tensor(list(winners.values()), dtype=torch.int64, device=indices.device)
            self.indices[dst] = indices[src].to(self.device, torch.int64)
            self.labels[dst] = labels[src].to(self.device, torch.int64)
            self.logits[dst] = logits[src].to(self.device, torch.float32)
        self.num_seen += len(indices)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``min(n, filled)`` distinct filled slots, uniformly (mammoth ``np.random.choice(..., replace=False)``)."""
        k = min(n, self.filled)
        return torch.randperm(self.filled, generator=generator)[:k].to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "num_seen": self.num_seen,
            "indices": self.indices.cpu().clone(),
            "labels": self.labels.cpu().clone(),
            "logits": self.logits.cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"buffer checkpoint has {state['size']} slots, this run {self.size}")
        self.num_seen = int(state["num_seen"])
        for name in ("indices", "labels", "logits"):
            getattr(self, name).copy_(state[name].to(self.device))
