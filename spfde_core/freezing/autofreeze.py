"""AutoFreeze-style freezing by gradient-norm change (Liu, Agarwal & Venkataraman, arXiv 2102.01386).

Training is split into ``num_intervals`` equal intervals (whole epochs here). Within an interval
every trainable block's gradients are summed over the steps; at the interval's end each block's
L1 norm of that sum is compared with the previous interval's: ratio = |n_now - n_prev| / n_prev.
The ``percentile`` (50 = median) of the ratios over the still-trainable blocks is the threshold,
and every block in front of the first block whose ratio reaches it is frozen (a prefix only; the
head never freezes). Gradients of sparse layers are taken with their masks applied. SpFDE argues
this criterion is unreliable under prune-and-grow (Sec. 3); this entry lets that be measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore

from spfde_core.config import MethodConfig, domain
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.train.callbacks import TrainState


@dataclass
class AutoFreezeConfig(MethodConfig):
    name: str = "autofreeze"
    num_intervals: int = domain("[1, inf)", 20)
    """Equal intervals the run is split into (AutoFreeze README commands: 20)."""
    percentile: float = domain("[0, 100]", 50.0)
    """Percentile of the change ratios used as threshold (AutoFreeze default: the median)."""


def blocks_to_freeze(ratios: list[float], percentile: float) -> int:
    """Number of leading blocks in front of the first one whose ratio reaches the percentile."""
    threshold = torch.quantile(torch.tensor(ratios, dtype=torch.float64), percentile / 100).item()
    for i, ratio in enumerate(ratios):
        if ratio >= threshold:
            return i
    return len(ratios)


class AutoFreeze:
    def __init__(self, cfg: AutoFreezeConfig, state: TrainState) -> None:
        self.cfg = cfg
        self.interval = max(1, round(state.cfg.train.epochs / cfg.num_intervals))
        self.frozen = 0
        self.previous: list[float] | None = None
        self.sums: dict[int, torch.Tensor] = {}  # block index -> running sum of |sum of grads| parts
        self.history: list[dict[str, Any]] = []
        self.num_blocks = len(state.model.blocks)

    def after_backward(self, state: TrainState, batch: Any) -> None:
        for index in range(self.frozen, self.num_blocks):
            for name, param in state.model.blocks[index].named_parameters():
                if param.grad is None:
                    continue
                grad = param.grad.detach()
                module_mask = _mask_for(state.model.blocks[index], name)
                if module_mask is not None:
                    grad = grad * module_mask
                key = id(param)
                self.sums[key] = self.sums.get(key, torch.zeros_like(grad, dtype=torch.float32)) + grad.float()

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch and state.epoch % self.interval == 0:
            self._decide(state)
        state.model.num_frozen_blocks = self.frozen
        state.epoch_log["frozen_blocks"] = self.frozen

    def _decide(self, state: TrainState) -> None:
        norms = []
        for index in range(self.num_blocks):
            params = list(state.model.blocks[index].parameters())
            norms.append(sum(float(self.sums[id(p)].abs().sum()) for p in params if id(p) in self.sums))
        self.sums = {}
        if self.previous is not None:
            active = range(self.frozen, self.num_blocks)
            ratios = [abs(norms[i] - self.previous[i]) / max(self.previous[i], 1e-12) for i in active]
            k = self.frozen + blocks_to_freeze(ratios, self.cfg.percentile)
            self.frozen = min(max(k, self.frozen), self.num_blocks - 1)
            self.history.append({"epoch": state.epoch, "ratios": ratios, "frozen_blocks": self.frozen})
        self.previous = norms

    def record(self, state: TrainState, run_dir: Any) -> dict[str, Any]:
        return {
            "freezing": {
                "method": self.cfg.name,
                "interval_epochs": self.interval,
                "decisions": self.history,
                "frozen_blocks_per_epoch": [e.get("frozen_blocks", 0) for e in state.history],
                "bn_in_frozen_blocks": "eval mode: running statistics used and no longer updated",
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen, "previous": self.previous, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Gradient sums of a partly finished interval are not kept: checkpoints are taken at epoch
        # ends, so a resume mid-interval restarts that interval's sums (documented limitation).
        self.frozen, self.previous, self.history = state["frozen"], state["previous"], state["history"]


def _mask_for(block: torch.nn.Module, param_name: str) -> torch.Tensor | None:
    module_name, _, attr = param_name.rpartition(".")
    if attr != "weight":
        return None
    module = block.get_submodule(module_name) if module_name else block
    return getattr(module, "weight_mask", None)


@FREEZING_METHODS.register("autofreeze")
def build_autofreeze(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """AutoFreeze: freeze the prefix in front of the first block whose gradient-norm change is above median."""
    return [AutoFreeze(cfg, state)]


ConfigStore.instance().store(group="freezing", name="autofreeze_schema", node=AutoFreezeConfig)
