"""A trainer state stand-in for unit tests of sieving callbacks (no model, no training)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from spfde_core.data.sampling import validate_active
from spfde_core.train.callbacks import StepOutput


class FakeLoader:
    """Only what sieving reads: the active set, its size and the device."""

    def __init__(self, num_total: int) -> None:
        self.num_total = num_total
        self.device = torch.device("cpu")
        self.active: torch.Tensor | None = None

    def set_active(self, indices: torch.Tensor | None) -> None:
        self.active = None if indices is None else validate_active(indices, self.num_total)

    @property
    def num_samples(self) -> int:
        return self.num_total if self.active is None else int(self.active.numel())

    def indices(self) -> torch.Tensor:
        return torch.arange(self.num_total) if self.active is None else self.active


def fake_state(num_samples: int, seed: int = 0, epochs: int = 20) -> SimpleNamespace:
    cfg = OmegaConf.create({"run": {"seed": seed}, "train": {"epochs": epochs}})
    return SimpleNamespace(
        cfg=cfg, train_loader=FakeLoader(num_samples), device=torch.device("cpu"), epoch=0, epoch_log={}
    )


def step(indices, correct, losses=None) -> StepOutput:
    idx = torch.as_tensor(indices, dtype=torch.int64)
    correct = torch.as_tensor(correct, dtype=torch.bool)
    losses = torch.zeros(len(idx)) if losses is None else torch.as_tensor(losses, dtype=torch.float32)
    return StepOutput(idx, losses, correct, torch.zeros(len(idx), 2))


def run_epochs(callback, state, epochs, stats_fn) -> list[torch.Tensor]:
    """Drive ``callback`` through ``epochs`` epochs: one step over the active set per epoch.

    ``stats_fn(epoch, indices) -> (correct, losses)`` makes the synthetic statistics. Returns the
    active set of every epoch.
    """
    actives = []
    for epoch in range(epochs):
        state.epoch, state.epoch_log = epoch, {}
        callback.on_epoch_start(state)
        idx = state.train_loader.indices()
        actives.append(idx.clone())
        correct, losses = stats_fn(epoch, idx)
        if hasattr(callback, "after_step"):
            callback.after_step(state, step(idx, correct, losses))
    return actives
