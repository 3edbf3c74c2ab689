"""Progress display: a live bar per epoch on a terminal; elsewhere (a log file, CI, SLURM) a plain log
line every ``log_every_s`` seconds within the epoch with images/s and ETA; one line per epoch always."""

from __future__ import annotations

import logging
from time import monotonic

from tqdm.auto import tqdm

from spfde_core.data.types import Batch
from spfde_core.train.callbacks import StepOutput, TrainState

log = logging.getLogger("spfde_core.train")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressBar:
    """tqdm bar with loss, accuracy, images/s and ETA on a terminal (``train.progress``); without a live
    bar, a log line every ``log_every_s`` seconds, so a redirected run is never silent for a whole epoch."""

    def __init__(self, enabled: bool, refresh_every: int = 10, log_every_s: float = 30.0) -> None:
        self.enabled = enabled
        self.refresh_every = refresh_every
        self.log_every_s = log_every_s
        self.bar: tqdm | None = None

    def on_epoch_start(self, state: TrainState) -> None:
        total = len(state.train_loader)
        if state.cfg.train.max_batches_per_epoch:
            total = min(total, state.cfg.train.max_batches_per_epoch)
        self.total, self.done, self.images = total, 0, 0
        self.epoch_start = monotonic()
        self.next_log = self.epoch_start + self.log_every_s
        if not self.enabled:
            return
        # disable=None: tqdm switches itself off when the output is not a terminal (CI, SLURM logs).
        self.bar = tqdm(
            total=total,
            desc=f"epoch {state.epoch + 1}/{state.cfg.train.epochs}",
            unit="batch",
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )
        self.loss = self.correct = self.seen = 0.0

    def on_batch_start(self, state: TrainState, batch: Batch) -> None:
        self.batch_size = len(batch.labels)

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        self.done += 1
        self.images += len(step.losses)
        if self.bar is None or self.bar.disable:
            if monotonic() >= self.next_log:
                self._log_progress(state)
            return
        self.bar.update(1)
        if self.bar.n % self.refresh_every == 0:
            # .item() syncs the device, so only every few batches.
            self.loss = step.losses.mean().item()
            self.correct = step.correct.float().mean().item()
            rate = self.bar.format_dict["rate"] or 0.0
            self.bar.set_postfix(
                loss=f"{self.loss:.3f}", acc=f"{self.correct:.3f}", img_s=f"{rate * self.batch_size:.0f}"
            )

    def _log_progress(self, state: TrainState) -> None:
        """One line: where the epoch is, images/s, and the epoch's and the run's estimated time left."""
        now = monotonic()
        self.next_log = now + self.log_every_s
        elapsed = now - self.epoch_start
        per_batch = elapsed / self.done
        epoch_left = per_batch * (self.total - self.done)
        run_left = epoch_left + per_batch * self.total * (state.cfg.train.epochs - state.epoch - 1)
        log.info(
            "epoch %d/%d: batch %d/%d, %.0f img/s, epoch ETA %s, run ETA %s (training only, no eval)",
            state.epoch + 1,
            state.cfg.train.epochs,
            self.done,
            self.total,
            self.images / elapsed,
            _duration(epoch_left),
            _duration(run_left),
        )

    def on_epoch_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        e = state.epoch_log
        test = f" test_loss {e['test_loss']:.4f} test_acc {e['test_acc']:.4f}" if "test_acc" in e else ""
        log.info(
            "epoch %d/%d lr %.5f train_loss %.4f train_acc %.4f%s | %.0f img/s, %.1f s",
            state.epoch + 1,
            state.cfg.train.epochs,
            e["lr"],
            e["train_loss"],
            e["train_acc"],
            test,
            e["train_images_per_s"],
            e["train_s"] + e.get("eval_s", 0.0),
        )
