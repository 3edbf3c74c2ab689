"""MEST data-efficient training: one-shot removal of the least-forgotten examples (Yuan et al., NeurIPS 2021).

As the released ``main_sparse_train_w_data_efficient.py`` runs it (reference notes Sec. 2):

- every presentation in epochs ``0 .. E-1`` (train mode, augmented inputs) records the example's
  correctness; a forgetting event is a 1 -> 0 transition between consecutive presentations;
- at the start of epoch E, before its training, an example's count is its number of forgetting
  events, or ``train.epochs`` if it was never classified correctly (the code's ``--epochs``), so
  never-learned examples rank as the hardest;
- examples are sorted ascending by count and positions ``[keep_lowest_n, keep_lowest_n + remove_n)``
  of that order are removed for the rest of the run (with keep_lowest_n = 0: the least-forgotten,
  unforgettable ones first); this happens once, then the statistics are cleared.

Ties (most examples have count 0): the code's ``np.argsort`` (quicksort) leaves them in no set order,
and torchvision's CIFAR order interleaves the classes, so the tied examples it removes are a class-blind
pick. Prepared datasets here are stored class by class, so breaking ties by index would remove the first
classes' examples first; ties go in a seeded random order instead (``tie_generator``: a pure function of
the run seed, so a resumed run removes the same examples).

Defaults: the MEST script removes 12,000 of CIFAR's 50,000 images at epoch 70 of 160; stored as
``remove_fraction=0.24`` and ``remove_at_fraction=0.4375`` so other datasets and budgets scale;
``remove_n`` / ``remove_epoch`` give absolute values instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import MethodConfig, domain
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sieving.common import (
    check,
    config_dict,
    count_of,
    sieving_generator,
    stats_device,
    training_set_size,
)
from spfde_core.sieving.tracker import ExampleStats
from spfde_core.train.callbacks import StepOutput, TrainState


@dataclass
class MestForgettingConfig(MethodConfig):
    name: str = "mest_forgetting"
    remove_n: int | None = domain("[1, inf)", None)
    """Examples removed (MEST script: 12000 of 50k); null = round(remove_fraction * N)."""
    remove_fraction: float = domain("(0, 1)", 0.24)
    """Share removed when remove_n is null (0.24 = 12000 / 50000, the MEST script on CIFAR)."""
    keep_lowest_n: int = domain("[0, inf)", 0)
    """Sorted positions skipped before the removed range (MEST script: 0 = drop the least forgotten)."""
    remove_epoch: int | None = domain("[1, train.epochs)", None, what="an epoch")
    """Epoch E at whose start the removal happens (MEST script: 70 of 160); null = from remove_at_fraction."""
    remove_at_fraction: float = domain("(0, 1)", 0.4375)
    """E = round(remove_at_fraction * train.epochs) when remove_epoch is null (0.4375 = 70 / 160)."""


def forgetting_counts(stats: ExampleStats, never_learned_count: int) -> torch.Tensor:
    """MEST's per-example count: forgetting events, or ``never_learned_count`` if never correct."""
    counts = stats.forgets.clone()
    counts[~stats.ever_learned] = int(never_learned_count)
    return counts


def removal_order(counts: torch.Tensor, ties: torch.Generator) -> torch.Tensor:
    """Original indices sorted ascending by count; equal counts in a random order drawn from ``ties``.

    Not by index: the datasets are stored class by class, so index order among the many equal counts would
    be class order (the module docstring has the reasoning).
    """
    counts = counts.cpu()
    shuffled = torch.randperm(counts.numel(), generator=ties)
    return shuffled[torch.sort(counts[shuffled], stable=True).indices]


def tie_generator(seed: int, *key: object) -> torch.Generator:
    """The generator of a removal's tie order: a pure function of (run seed, key), so resumes agree."""
    return sieving_generator(seed, "tie_order", *key)


def removed_indices(counts: torch.Tensor, keep_lowest_n: int, remove_n: int, ties: torch.Generator) -> torch.Tensor:
    """Positions ``[keep_lowest_n, keep_lowest_n + remove_n)`` of ``removal_order(counts, ties)``."""
    return removal_order(counts, ties)[keep_lowest_n : keep_lowest_n + remove_n]


class MestForgetting:
    """The ``mest_forgetting`` callback."""

    def __init__(self, cfg: MestForgettingConfig, state: TrainState) -> None:
        self.cfg = cfg
        self.num_samples = training_set_size(state)
        self.epochs = int(state.cfg.train.epochs)
        n = self.num_samples
        # Numeric fields: their domains, checked in config.validate; here what needs the data or other fields.
        self.remove_n = count_of(cfg.remove_fraction, n) if cfg.remove_n is None else int(cfg.remove_n)
        check(
            1 <= self.remove_n and cfg.keep_lowest_n + self.remove_n < n,
            "remove_n",
            f"1 <= remove_n and keep_lowest_n + remove_n < {n} (the training set size)",
            self.remove_n,
        )
        e = count_of(cfg.remove_at_fraction, self.epochs) if cfg.remove_epoch is None else int(cfg.remove_epoch)
        check(
            1 <= e < self.epochs,
            "remove_epoch",
            f"an epoch in [1, train.epochs={self.epochs}) (it resolves to {e})",
            cfg.remove_epoch,
        )
        self.remove_epoch = e
        self.seed = int(state.cfg.run.seed)
        self.stats: ExampleStats | None = ExampleStats(n, stats_device(state))
        self.kept: torch.Tensor | None = None  # sorted CPU int64 after the removal
        self.summary: dict[str, Any] = {}

    def on_epoch_start(self, state: TrainState) -> None:
        removed_now = 0
        if state.epoch == self.remove_epoch and self.kept is None:
            removed_now = self.remove()
        state.train_loader.set_active(self.kept)
        state.epoch_log["sieving_active"] = self.num_samples if self.kept is None else int(self.kept.numel())
        state.epoch_log["sieving_removed"] = removed_now

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        if self.stats is not None:
            self.stats.observe(step)

    def remove(self) -> int:
        """The one-shot removal from the statistics so far; then the statistics are dropped."""
        assert self.stats is not None
        counts = forgetting_counts(self.stats, self.epochs).cpu()
        ties = tie_generator(self.seed, "mest_forgetting", self.remove_epoch)
        removed = removed_indices(counts, self.cfg.keep_lowest_n, self.remove_n, ties)
        keep = torch.ones(self.num_samples, dtype=torch.bool)
        keep[removed] = False
        self.kept = keep.nonzero().flatten()
        never = ~self.stats.ever_learned.cpu()
        self.summary = {
            "removed_at_epoch": self.remove_epoch,
            "unforgettable": int(((counts == 0) & ~never).sum()),
            "never_learned": int(never.sum()),
            "max_count_learned": int(counts[~never].max()) if bool((~never).any()) else None,
            "removed_count_range": [int(counts[removed].min()), int(counts[removed].max())],
            "removed_never_learned": int(never[removed].sum()),
            "mean_presentations": float(self.stats.presentations.float().mean()),
        }
        self.stats = None  # MEST clears the statistics and never uses them again
        return int(removed.numel())

    def state_dict(self) -> dict[str, Any]:
        return {
            "stats": None if self.stats is None else self.stats.state_dict(),
            "kept": None if self.kept is None else self.kept.clone(),
            "summary": dict(self.summary),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["stats"] is None:
            self.stats = None
        else:
            assert self.stats is not None
            self.stats.load_state_dict(state["stats"])
        self.kept = None if state["kept"] is None else state["kept"].cpu().to(torch.int64)
        self.summary = dict(state["summary"])

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        return {
            "sieving": {
                "method": self.cfg.name,
                "config": config_dict(self.cfg),
                "choices": {
                    "counts": "forgetting events (1->0 between consecutive presentations) over epochs "
                    f"0..{self.remove_epoch - 1}, train mode, augmented inputs; never learned = train.epochs",
                    "order": "ascending by count; ties in a seeded random order (the MEST code's np.argsort "
                    "leaves them unordered; index order would be class order in class-sorted datasets)",
                    "removed": f"sorted positions [{self.cfg.keep_lowest_n}, {self.cfg.keep_lowest_n + self.remove_n})",
                    "when": f"once, at the start of epoch {self.remove_epoch}; statistics cleared afterwards",
                },
                "num_samples": self.num_samples,
                "remove_n": self.remove_n,
                "remove_epoch": self.remove_epoch,
                "active_size": self.num_samples if self.kept is None else int(self.kept.numel()),
                **self.summary,
            }
        }


@SIEVING_METHODS.register("mest_forgetting")
def build_mest_forgetting(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """MEST data-efficient: drop the least-forgotten examples once mid-run (Yuan et al. 2021; Toneva et al. 2019)."""
    return [MestForgetting(cfg, state)]


ConfigStore.instance().store(group="sieving", name="mest_forgetting_schema", node=MestForgettingConfig)
