"""Progress display: a live bar per epoch on a terminal, one plain log line per epoch always."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from spfde_core.data.types import Batch
from spfde_core.train.callbacks import StepOutput, TrainState

log = logging.getLogger("spfde_core.train")


class ProgressBar:
    """tqdm bar with loss, accuracy, images/s and ETA; disabled when stdout is not a TTY."""

    def __init__(self, enabled: bool, refresh_every: int = 10) -> None:
        self.enabled = enabled
        self.refresh_every = refresh_every
        self.bar: tqdm | None = None

    def on_epoch_start(self, state: TrainState) -> None:
        if not self.enabled:
            return
        total = len(state.train_loader)
        if state.cfg.train.max_batches_per_epoch:
            total = min(total, state.cfg.train.max_batches_per_epoch)
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
        if self.bar is not None:
            self.batch_size = len(batch.labels)

    def after_step(self, state: TrainState, step: StepOutput) -> None:
        if self.bar is None or self.bar.disable:
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
