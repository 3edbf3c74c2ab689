"""The callback every prefix-freezing method runs through.

At the start of each epoch it sets ``model.num_frozen_blocks`` from the method's plan: the
frozen prefix then runs under ``torch.no_grad`` and in eval mode (``BlockModel``), so its weights,
BN statistics and masks stay bit-identical and no backward work is done for it. It must run
before the sparsity callback (the trainer orders it so) so that a block frozen at a mutation epoch
keeps the structure it trained with. Per-block LR schedules are set in ``on_train_start``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spfde_core.train.callbacks import TrainState

Schedule = Callable[[float], float]


class PrefixFreezing:
    """Applies ``frozen(epoch)`` and per-group schedules; records when each block was first frozen."""

    def __init__(
        self,
        cfg: DictConfig,
        frozen: Callable[[int], int],
        schedules: Callable[[TrainState], list[Schedule]] | None = None,
        choices: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.frozen = frozen
        self.make_schedules = schedules
        self.choices = choices or {}
        self.first_frozen: dict[str, int] = {}

    def on_train_start(self, state: TrainState) -> None:
        if self.make_schedules is not None:
            state.schedules[:] = self.make_schedules(state)

    def on_epoch_start(self, state: TrainState) -> None:
        k = self.frozen(state.epoch)
        if not 0 <= k < len(state.model.blocks):
            raise RuntimeError(f"freezing plan froze {k} of {len(state.model.blocks)} blocks at epoch {state.epoch}")
        state.model.num_frozen_blocks = k
        for name in state.model.block_names[:k]:
            self.first_frozen.setdefault(name, state.epoch)
        state.epoch_log["frozen_blocks"] = k

    def record(self, state: TrainState, run_dir: Any) -> dict[str, Any]:
        return {
            "freezing": {
                "method": self.cfg.name,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                "choices": self.choices,
                "first_frozen_epoch": self.first_frozen,
                "frozen_blocks_per_epoch": [e.get("frozen_blocks", 0) for e in state.history],
                "bn_in_frozen_blocks": "eval mode: running statistics used and no longer updated",
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {"first_frozen": self.first_frozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_frozen = dict(state["first_frozen"])


def group_blocks(state: TrainState) -> list[int]:
    """Model block index of each optimizer parameter group (groups are built one per block)."""
    index = {name: i for i, name in enumerate(state.model.block_names)}
    return [index[group["block"]] for group in state.optimizer.param_groups]


@dataclass(frozen=True)
class PlanningState:
    """What a freezing factory may read when its plan is derived before training (``spfde cost``):
    the composed config and the model (on the meta device); no optimizer, loaders or history."""

    cfg: DictConfig
    model: Any


def predicted_frozen_blocks(cfg: DictConfig, model: Any) -> list[int] | None:
    """Per training epoch, the frozen prefix the freezing method's plan sets; None when it has no plan.

    The method is built as in training, on a ``PlanningState``; a method whose callback is a
    ``PrefixFreezing`` (spfde_progressive, linear, freezeout) fixes ``frozen(epoch)`` at build time,
    so the prediction is exact. A method that decides online (autofreeze) has no such plan.
    """
    from spfde_core.freezing import FREEZING_METHODS

    if cfg.freezing.name == "none":
        return [0] * int(cfg.train.epochs)
    callbacks = FREEZING_METHODS.get(cfg.freezing.name)(cfg.freezing, PlanningState(cfg, model))
    plans = [cb.frozen for cb in callbacks if isinstance(cb, PrefixFreezing)]
    if not plans:
        return None
    frozen = [int(plans[0](e)) for e in range(int(cfg.train.epochs))]
    bad = [k for k in frozen if not 0 <= k < len(model.blocks)]
    if bad:
        raise RuntimeError(f"freezing plan froze {bad[0]} of {len(model.blocks)} blocks")
    return frozen
