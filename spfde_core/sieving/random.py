"""Random-subset controls: train on a random (1 - remove_fraction) share of the training set.

- ``random_fixed``: one subset for the whole run (Toneva et al. 2019's random-removal control at
  the same data budget as a sieving method);
- ``random_redraw``: a fresh subset every ``redraw_every_epochs`` epochs (a control for SpFDE's
  circular sieving: same |P| and update interval, random instead of forgetting-based choice).

Draw j is used for epochs ``[j * k, (j + 1) * k)`` (k = redraw_every_epochs; k = 0: draw 0 always).
Draw 0 is the same initial split ``spfde_circular`` starts from, so with one seed the controls and
SpFDE begin on the same subset. Every draw is a pure function of (run seed, j): nothing to
checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import MethodConfig, domain
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sieving.common import check, config_dict, count_of, random_split, training_set_size
from spfde_core.train.callbacks import TrainState


@dataclass
class RandomSubsetConfig(MethodConfig):
    name: str = "random_fixed"
    remove_fraction: float = domain("(0, 1)", 0.2)
    """Share of the training set left out (the same y as spfde_circular)."""
    redraw_every_epochs: int = domain("[0, inf)", 0)
    """0 = one subset for the whole run (random_fixed); k > 0 = a new subset every k epochs (random_redraw)."""


class RandomSubset:
    """The ``random_fixed`` / ``random_redraw`` callback."""

    def __init__(self, cfg: RandomSubsetConfig, state: TrainState) -> None:
        if cfg.name == "random_fixed":
            check(cfg.redraw_every_epochs == 0, "redraw_every_epochs", "0 for random_fixed", cfg.redraw_every_epochs)
        else:
            check(cfg.redraw_every_epochs >= 1, "redraw_every_epochs", "an integer >= 1", cfg.redraw_every_epochs)
        self.cfg = cfg
        self.seed = int(state.cfg.run.seed)
        self.every = int(cfg.redraw_every_epochs)
        self.num_samples = training_set_size(state)
        self.num_removed = count_of(cfg.remove_fraction, self.num_samples)
        check(
            0 < self.num_removed < self.num_samples,
            "remove_fraction",
            f"a share leaving a non-empty subset of {self.num_samples} samples",
            cfg.remove_fraction,
        )
        self._cache: tuple[int, torch.Tensor] | None = None

    def draw_index(self, epoch: int) -> int:
        return 0 if self.every == 0 else epoch // self.every

    def subset(self, draw: int) -> torch.Tensor:
        """The kept samples of draw ``draw`` (sorted original indices)."""
        if self._cache is None or self._cache[0] != draw:
            self._cache = (draw, random_split(self.seed, self.num_samples, self.num_removed, draw)[1])
        return self._cache[1]

    def on_epoch_start(self, state: TrainState) -> None:
        draw = self.draw_index(state.epoch)
        swaps = 0
        if draw > 0 and state.epoch % self.every == 0:
            previous = self.subset(draw - 1)
            mask = torch.zeros(self.num_samples, dtype=torch.bool)
            mask[previous] = True
            swaps = int((~mask[self.subset(draw)]).sum())
        kept = self.subset(draw)
        state.train_loader.set_active(kept)
        state.epoch_log["sieving_active"] = int(kept.numel())
        state.epoch_log["sieving_swaps"] = swaps

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        draws = self.draw_index(max(state.epoch - 1, 0)) + 1
        return {
            "sieving": {
                "method": self.cfg.name,
                "config": config_dict(self.cfg),
                "choices": {
                    "subset": "uniformly random; draw 0 = spfde_circular's initial split (run seed, 'sieving', "
                    "'initial_split'); draw j > 0 from (run seed, 'sieving', 'random_subset', j)",
                    "redraw": "never" if self.every == 0 else f"at the start of every epoch multiple of {self.every}",
                },
                "num_samples": self.num_samples,
                "active_size": self.num_samples - self.num_removed,
                "num_draws": draws,
            }
        }


@SIEVING_METHODS.register("random_fixed")
@SIEVING_METHODS.register("random_redraw")
def build_random_subset(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Random subset of (1 - remove_fraction) of the data, fixed or re-drawn (random control, Toneva et al. 2019)."""
    return [RandomSubset(cfg, state)]


ConfigStore.instance().store(group="sieving", name="random_subset_schema", node=RandomSubsetConfig)
