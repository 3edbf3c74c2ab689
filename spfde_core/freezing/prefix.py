"""The callback every prefix-freezing method runs through.

At the start of each epoch it sets ``model.num_frozen_blocks`` from the method's plan: the
frozen prefix then runs under ``torch.no_grad`` and in eval mode (``BlockModel``), so its weights,
BN statistics and masks stay bit-identical and no backward work is done for it. It must run
before the sparsity callback (the trainer orders it so) so that a block frozen at a mutation epoch
keeps the structure it trained with. Per-block LR schedules are set in ``on_train_start``.
"""

from __future__ import annotations

from collections.abc import Callable
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
