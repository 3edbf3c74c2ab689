"""Checkpoints written atomically after every epoch, outside results/, and the resume logic.

A checkpoint holds everything that is not a pure function of (config, seed, epoch): model and
optimizer state, callback states, the curve so far and the clocks. LR schedules are derived from
the config (callbacks that change them, e.g. freezing, set them again in ``on_train_start``). Data order and
augmentation are functions of (seed, epoch), so a resumed run replays exactly what an
uninterrupted one would have done and ends with identical numbers on CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from spfde_core import atomic
from spfde_core.cost.events import CostEvent
from spfde_core.train.callbacks import CallbackList, TrainState

log = logging.getLogger("spfde_core.train")
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed; the message names the file and what to do."""


class Checkpointer:
    """Saves ``last.pt`` after every epoch, with the states of ``callbacks``: the callbacks before it
    in the run's list (``run_training`` puts it last, so it saves what they left at the epoch's end)."""

    def __init__(self, path: Path, config_hash: str, callbacks: CallbackList | None = None) -> None:
        self.path = Path(path)
        self.config_hash = config_hash
        self.callbacks = callbacks

    def on_epoch_end(self, state: TrainState) -> None:
        self._save(self.path, self.snapshot(state), state.cfg.train.epochs)
        every = state.cfg.run.snapshot_every_epochs
        if every and (state.epoch + 1) % every == 0:
            # Model-only snapshots for analyses over training (CKA against the final model).
            snapshot = self.path.parent / "snapshots" / f"epoch{state.epoch + 1:04d}.pt"
            self._save(snapshot, state.model.state_dict(), state.cfg.train.epochs)

    def _save(self, path: Path, obj: Any, epochs: int) -> None:
        """Atomic write; a full disk or any I/O error ends the run with one line, the last good checkpoint intact."""
        from spfde_core.train.faults import resume_message

        try:
            atomic.torch_save(path, obj)
        except (OSError, RuntimeError) as err:  # a full disk surfaces from torch's zip writer as RuntimeError
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
            raise CheckpointError(
                f"{path}: cannot write the checkpoint ({reason}); nothing was half-written. "
                f"{resume_message(self.path, epochs)} (free space first)"
            ) from None

    def snapshot(self, state: TrainState) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config_hash": self.config_hash,
            # train.precision=auto is resolved after the config is hashed (it depends on the CPU): kept so
            # that a resume on another CPU class cannot switch precision halfway through one record.
            "precision": state.cfg.train.precision,
            "next_epoch": state.epoch + 1,
            "step": state.step,
            "model": state.model.state_dict(),
            "num_frozen_blocks": getattr(state.model, "num_frozen_blocks", 0),
            "optimizer": state.optimizer.state_dict(),
            "callbacks": self.callbacks.state_dict() if self.callbacks else {},
            "history": state.history,
            "elapsed_s": state.elapsed_s,
            "train_s": state.train_s,
            "images_trained": state.images_trained,
            "resumed_from_epoch": state.resumed_from_epoch,
            "started_at": state.started_at,
            "cost_events": [CostEvent.coerce(e).as_dict() for e in state.cost_events],
            "torch_rng": torch.get_rng_state(),
        }


def resume(path: Path, config_hash: str, state: TrainState, callbacks: CallbackList) -> bool:
    """Load ``path`` into ``state`` if it exists; return whether a run was resumed."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        ckpt = torch.load(path, map_location=state.device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, do not guess
        raise CheckpointError(f"{path}: cannot be loaded ({err}); delete it or set run.force=true") from None
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
    if ckpt["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path}: belongs to config {ckpt['config_hash']}, not this run's {config_hash}; "
            "delete it or set run.force=true to start over"
        )
    trained_in, here = ckpt.get("precision"), state.cfg.train.precision  # absent in older checkpoints
    if trained_in is not None and trained_in != here:
        raise CheckpointError(
            f"{path}: epochs 1-{ckpt['next_epoch']} trained in {trained_in}, but train.precision resolves to "
            f"{here} on this machine; resuming would mix two precisions in one record. Resume it on a machine "
            f"of the CPU class that started it, or set run.force=true to start over here"
        )
    state.model.load_state_dict(ckpt["model"])
    if hasattr(state.model, "num_frozen_blocks"):
        state.model.num_frozen_blocks = ckpt["num_frozen_blocks"]
    state.optimizer.load_state_dict(ckpt["optimizer"])
    callbacks.load_state_dict(ckpt["callbacks"])
    state.epoch = ckpt["next_epoch"]
    state.step = ckpt["step"]
    state.history = ckpt["history"]
    state.elapsed_s = ckpt["elapsed_s"]
    state.train_s = ckpt["train_s"]
    state.images_trained = ckpt["images_trained"]
    state.resumed_from_epoch = [*ckpt["resumed_from_epoch"], state.epoch]
    state.started_at = ckpt["started_at"]
    state.cost_events = [CostEvent.from_dict(e) for e in ckpt["cost_events"]]
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    log.info("resumed from %s at epoch %d", path, state.epoch)
    return True
