"""SpFDE circular data sieving (Yuan et al., NeurIPS 2022, "Circular Data Sieving"; patent US20240070521, FIG. 4).

1. At the start, ``remove_fraction`` (y) of all training samples are removed at random: the removed
   set R, kept as an ordered queue (head first), and the partial set P that is trained on.
2. Over every interval of ``update_every_epochs`` epochs (Delta-tau, the DST mask-update interval),
   each example's forgetting events (1 -> 0 correctness transitions between presentations) are
   counted within that interval only; counts are reset every interval.
3. At each update (start of epoch ``start_epoch + j * update_every_epochs``), the ``swap_count``
   easiest samples of P go to the TAIL of R and the same number is taken from R's HEAD into P, so
   |P| stays constant.
4. Once every sample initially in R has been taken back, R is shuffled after every update
   (paper: "After all the initial removed samples are retrieved, we shuffle the removed dataset
   after each update"), so that every sample gets used.

Decisions on the points the sources leave open (docs/sieving.md has the reasoning):

- ``swap_fraction`` p is a share of |P| by default (``swap_fraction_of=partial``; ``dataset`` makes
  it a share of N). Default 0.1: the paper's value is not available (its Appendix D is missing).
- "Easiest" order (ascending = easiest first): (a) examples classified correctly at least once in
  the interval, then examples not presented in the interval (no evidence), then examples never
  correct in the interval ("never learned": never easy, they are the hardest); (b) fewer interval
  forgetting events; (c) lower loss at the latest presentation; (d) lower original index.
- The moved samples enter R's tail easiest first; the ``swap_count`` head samples of R enter P.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core import atomic
from spfde_core.config import MethodConfig, domain
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sieving.common import (
    check,
    config_dict,
    count_of,
    random_split,
    sieving_generator,
    stats_device,
    training_set_size,
)
from spfde_core.sieving.tracker import ExampleStats
from spfde_core.train.callbacks import StepOutput, TrainState
from spfde_core.train.schedules import delta_tau

UPDATES_FILE = "sieving_updates.csv"

GROUP_LEARNED, GROUP_UNSEEN, GROUP_NEVER_LEARNED = 0, 1, 2


@dataclass
class CircularConfig(MethodConfig):
    name: str = "spfde_circular"
    remove_fraction: float = domain("(0, 1)", 0.2)
    """y: share of the training set removed at any time, |R| / N (the "y" of SpFDE's "x% + y%")."""
    update_every_epochs: int | None = domain("[1, inf)", None)
    """Delta-tau: epochs between updates; null = MEST's mask-update interval, 5 of 160 epochs scaled with the
    run length (``train.schedules.delta_tau``; SpFDE's own value is not given)."""
    swap_fraction: float = domain("(0, 1]", 0.1)
    """p: share of samples swapped per update, of |P| (swap_fraction_of=partial) or of N (=dataset)."""
    swap_fraction_of: str = "partial"
    """What swap_fraction is a share of: partial (|P|, default) or dataset (N)."""
    start_epoch: int | None = domain("[1, train.epochs)", None, what="an epoch")
    """Epoch of the first update; null = update_every_epochs (one full interval of statistics first)."""
    shuffle_after_cycle: bool = True
    """Shuffle R after every update once every initially removed sample was taken back (paper); false = pure FIFO."""


def rank_easiest(stats: ExampleStats, candidates: torch.Tensor) -> torch.Tensor:
    """``candidates`` (original indices) ordered easiest first by the documented interval criteria."""
    cand = torch.as_tensor(candidates, dtype=torch.int64).cpu().sort().values  # (d) lower index on full ties
    idx = cand.to(stats.device)
    presented = stats.interval_presentations[idx] > 0
    learned = stats.interval_learned[idx]
    group = torch.full_like(idx, GROUP_NEVER_LEARNED)
    group[~presented] = GROUP_UNSEEN
    group[learned] = GROUP_LEARNED
    events = stats.interval_forgets[idx]
    loss = torch.nan_to_num(stats.last_loss[idx], nan=float("inf"))
    # Stable sorts from the least to the most significant key give the lexicographic order.
    order = torch.sort(loss, stable=True).indices
    order = order[torch.sort(events[order], stable=True).indices]
    order = order[torch.sort(group[order], stable=True).indices]
    return cand[order.cpu()]


class CircularQueue:
    """The partial set P (a membership mask) and the removed queue R (an ordered tensor, head first)."""

    def __init__(self, removed: torch.Tensor, num_samples: int) -> None:
        self.num_samples = int(num_samples)
        self.queue = torch.as_tensor(removed, dtype=torch.int64).clone()
        self.in_partial = torch.ones(num_samples, dtype=torch.bool)
        self.in_partial[self.queue] = False
        self.ever_used = self.in_partial.clone()
        self.initial_removed = int(self.queue.numel())
        self.retrieved = 0
        """Samples taken from R's head so far; R is FIFO until the initial R was retrieved once."""
        self.partial_size = int(self.in_partial.sum())
        self._check()

    @property
    def partial(self) -> torch.Tensor:
        """P as sorted original indices."""
        return self.in_partial.nonzero().flatten()

    @property
    def cycled(self) -> bool:
        """Every sample initially in R has been taken back (the first retrieved ones are exactly those)."""
        return self.retrieved >= self.initial_removed

    def swap(self, easiest: torch.Tensor, shuffle: torch.Generator | None = None) -> torch.Tensor:
        """Move ``easiest`` (samples of P) to R's tail, take as many from R's head into P; return those taken.

        If ``shuffle`` is given and the initial R has been fully retrieved after this swap, R is then
        shuffled with it.
        """
        easiest = torch.as_tensor(easiest, dtype=torch.int64).cpu()
        k = int(easiest.numel())
        if k > self.queue.numel():
            raise ValueError(f"cannot swap {k} samples with a removed queue of {self.queue.numel()}")
        if not bool(self.in_partial[easiest].all()) or torch.unique(easiest).numel() != k:
            raise ValueError("samples to remove must be distinct members of the partial set")
        self.queue = torch.cat([self.queue, easiest])
        taken, self.queue = self.queue[:k].clone(), self.queue[k:].clone()
        self.in_partial[easiest] = False
        self.in_partial[taken] = True
        self.ever_used[taken] = True
        self.retrieved += k
        if shuffle is not None and self.cycled:
            self.queue = self.queue[torch.randperm(self.queue.numel(), generator=shuffle)]
        self._check()
        return taken

    def _check(self) -> None:
        size = int(self.in_partial.sum())
        assert size == self.partial_size, f"|P| changed from {self.partial_size} to {size}"
        assert size + self.queue.numel() == self.num_samples, "P and R do not partition the training set"
        assert not bool(self.in_partial[self.queue].any()), "a sample is both in P and in R"

    def state_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.clone(),
            "in_partial": self.in_partial.clone(),
            "ever_used": self.ever_used.clone(),
            "initial_removed": self.initial_removed,
            "retrieved": self.retrieved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue = state["queue"].cpu().to(torch.int64).clone()
        self.in_partial = state["in_partial"].cpu().clone()
        self.ever_used = state["ever_used"].cpu().clone()
        self.initial_removed = int(state["initial_removed"])
        self.retrieved = int(state["retrieved"])
        self.partial_size = int(self.in_partial.sum())
        self._check()


def swap_count(cfg: CircularConfig, num_samples: int, partial_size: int) -> int:
    base = partial_size if cfg.swap_fraction_of == "partial" else num_samples
    return count_of(cfg.swap_fraction, base)


class CircularSieving:
    """The ``spfde_circular`` callback: statistics from every training step, updates at interval starts."""

    def __init__(self, cfg: CircularConfig, state: TrainState) -> None:
        # Numeric fields: their domains, checked in config.validate; here what needs the data or other fields.
        interval = cfg.update_every_epochs or delta_tau(state.cfg.train.epochs)
        of = cfg.swap_fraction_of
        check(of in ("partial", "dataset"), "swap_fraction_of", "partial or dataset", of)
        start = interval if cfg.start_epoch is None else cfg.start_epoch
        self.cfg = cfg
        self.name = cfg.name
        self.seed = int(state.cfg.run.seed)
        self.interval = int(interval)
        self.start_epoch = int(start)
        self.num_samples = training_set_size(state)
        num_removed = count_of(cfg.remove_fraction, self.num_samples)
        check(
            0 < num_removed < self.num_samples,
            "remove_fraction",
            f"a share leaving both sets non-empty ({self.num_samples} samples)",
            cfg.remove_fraction,
        )
        removed, _ = random_split(self.seed, self.num_samples, num_removed)
        self.queue = CircularQueue(removed, self.num_samples)
        self.swap_count = swap_count(cfg, self.num_samples, self.queue.partial_size)
        check(
            1 <= self.swap_count <= num_removed,
            "swap_fraction",
            f"a share giving 1..|R|={num_removed} swaps per update (it gives {self.swap_count})",
            cfg.swap_fraction,
        )
        self.stats = ExampleStats(self.num_samples, stats_device(state))
        self.updates: list[dict[str, Any]] = []
        self.cycled_at_epoch: int | None = None

    # ---- schedule --------------------------------------------------------------------------
    def is_boundary(self, epoch: int) -> bool:
        """Epochs where an interval starts (statistics reset); updates happen at those >= start_epoch."""
        return (epoch - self.start_epoch) % self.interval == 0

    def is_update(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and self.is_boundary(epoch)

    # ---- hooks -----------------------------------------------------------------------------
    def on_epoch_start(self, state: TrainState) -> None:
        epoch = state.epoch
        swaps = 0
        if self.is_update(epoch):
            swaps = self.update(epoch)
        if self.is_boundary(epoch):
            self.stats.reset_interval()
        state.train_loader.set_active(self.queue.partial)
        state.epoch_log["sieving_active"] = self.queue.partial_size
        state.epoch_log["sieving_swaps"] = swaps

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        self.stats.observe(step)

    def update(self, epoch: int) -> int:
        """One circular update from the current interval's statistics; returns the number swapped."""
        ranked = rank_easiest(self.stats, self.queue.partial)
        easiest = ranked[: self.swap_count]
        dev = self.stats.device
        moved_events = self.stats.interval_forgets[easiest.to(dev)]
        p_events = self.stats.interval_forgets[ranked.to(dev)]
        was_cycled, used_before = self.queue.cycled, self.queue.ever_used.clone()
        gen = sieving_generator(self.seed, "circular_shuffle", epoch) if self.cfg.shuffle_after_cycle else None
        taken = self.queue.swap(easiest, gen)
        if self.queue.cycled and not was_cycled:
            self.cycled_at_epoch = epoch
        moved_learned = self.stats.interval_learned[easiest.to(dev)]
        self.updates.append(
            {
                "epoch": epoch,
                "swaps": int(easiest.numel()),
                "partial_size": self.queue.partial_size,
                "queue_size": int(self.queue.queue.numel()),
                "moved_max_interval_forgets": int(moved_events.max()),
                "moved_mean_interval_forgets": float(moved_events.float().mean()),
                "moved_not_learned": int((~moved_learned).sum()),
                "partial_mean_interval_forgets": float(p_events.float().mean()),
                "taken_first_time": int((~used_before[taken]).sum()),
                "retrieved_total": self.queue.retrieved,
                "cycled": self.queue.cycled,
                "shuffled": gen is not None and self.queue.cycled,
                "samples_ever_used": int(self.queue.ever_used.sum()),
            }
        )
        return int(easiest.numel())

    # ---- checkpoint / record ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.state_dict(),
            "stats": self.stats.state_dict(),
            "updates": [dict(u) for u in self.updates],
            "cycled_at_epoch": -1 if self.cycled_at_epoch is None else self.cycled_at_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue.load_state_dict(state["queue"])
        self.stats.load_state_dict(state["stats"])
        self.updates = [dict(u) for u in state["updates"]]
        cycled = int(state["cycled_at_epoch"])
        self.cycled_at_epoch = None if cycled < 0 else cycled

    def choices(self) -> dict[str, Any]:
        return {
            "initial_split": "uniformly random, from a generator seeded by (run seed, 'sieving', 'initial_split')",
            "difficulty": "forgetting events (1->0 between consecutive presentations) within the current interval, "
            "train mode, augmented inputs; counts reset at every interval start",
            "swap_fraction_of": self.cfg.swap_fraction_of,
            "easiest_order": "learned in the interval < not presented in the interval < never correct in the "
            "interval (never easy); then fewer interval forgetting events; then lower latest loss; then lower index",
            "queue": "easiest enter R's tail easiest first; the same number leave R's head into P",
            "shuffle": "R shuffled after every update once the initial R has been fully retrieved"
            if self.cfg.shuffle_after_cycle
            else "never (pure FIFO queue)",
            "update_epochs": f"start of epoch {self.start_epoch} + k * {self.interval}",
        }

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        atomic.write_csv(Path(run_dir) / UPDATES_FILE, self.updates)
        used = int(self.queue.ever_used.sum())
        return {
            "sieving": {
                "method": self.name,
                "config": config_dict(self.cfg),
                "choices": self.choices(),
                "num_samples": self.num_samples,
                "active_size": self.queue.partial_size,
                "removed_size": int(self.queue.queue.numel()),
                "swap_count": self.swap_count,
                "start_epoch": self.start_epoch,
                "num_updates": len(self.updates),
                "cycled_at_epoch": self.cycled_at_epoch,
                "samples_ever_used": used,
                "fraction_ever_used": used / self.num_samples,
                "updates_file": UPDATES_FILE,
            }
        }


@SIEVING_METHODS.register("spfde_circular")
def build_circular(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """SpFDE circular data sieving: swap the easiest (interval forgetting) with a removed queue (Yuan et al. 2022)."""
    return [CircularSieving(cfg, state)]


ConfigStore.instance().store(group="sieving", name="spfde_circular_schema", node=CircularConfig)
