"""SparCL's dynamic gradient masking (DGM): only the largest gradients of the sparse layers update weights.

As ``prune_utils/retrain.py`` runs it with ``--gradient_efficient_mix --gradient_sparse 0.80
--sample_frequency 30`` (``train()`` of the main script, after ``loss.backward()`` on current + buffer terms):

- at batches whose in-epoch index is a multiple of 30 (``apply_masks_on_grads_mix``): each masked layer's
  gradient is multiplied by its weight mask, then every entry with |g| below the 80th percentile of |g| over
  the *whole* tensor (numpy ``percentile``, linear interpolation; the masked zeros count) is zeroed, and the
  new gradient mask is ``g != 0``;
- at the other batches (``apply_masks_on_grads_efficient``): the gradient is multiplied by that mask.

With 75 % weight sparsity the 80th percentile falls among the surviving weights, so about 80 % of *their*
gradients are kept (20 % of all entries), not 20 % of them: copied as is (``choices()`` says so).
The layers are those with a weight mask (TDM's sparse layers). Without TDM the script has no masks and DGM
does nothing; here it then acts on the layers TDM would make sparse (the model's default sparse layers), so
the "+ DGM" row on a dense model measures something (recorded as a choice).
The mask is rebuilt at batch 0 of every epoch, so checkpoints at epoch ends need not hold it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from spfde_core.data.types import Batch
from spfde_core.sparsity.masks import MASK_BUFFER
from spfde_core.train.callbacks import TrainState


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's ``percentile(values, 100 q)`` with linear interpolation, for tensors of any size."""
    flat = values.flatten().float().sort().values
    pos = q * (flat.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.numel() - 1)
    return flat[lo] + (flat[hi] - flat[lo]) * (pos - lo)


def percentile_mask(grad: torch.Tensor, weight_mask: torch.Tensor | None, q: float) -> torch.Tensor:
    """Zero ``grad`` in place as the script's mix step does and return the new gradient mask (bool)."""
    if weight_mask is not None:
        grad.mul_(weight_mask.to(grad.dtype))
    magnitude = grad.abs()
    grad[magnitude < percentile(magnitude, q)] = 0
    return grad != 0


class DynamicGradientMasking:
    """Percentile gradient masks refreshed every ``refresh_batches`` batches (module docstring)."""

    def __init__(self, cfg: DictConfig, state: TrainState) -> None:
        g = cfg.continual.dgm
        self.q = float(g.sparsity)
        self.refresh = int(g.refresh_batches)
        self.model = state.model
        self.batch = 0
        self.masks: dict[str, torch.Tensor] = {}
        self.layers: list[tuple[str, torch.nn.Module]] = []
        self.on_masked_layers: bool | None = None
        """Whether ``layers`` are TDM's masked layers (None until chosen at the first backward, once masks exist)."""
        self.kept_sum = 0.0
        """Sum over steps of the share of the DGM layers' weight-gradient entries kept (for the cost block)."""
        self.steps = 0
        self.refreshes = 0
        self.kept_counts: dict[str, int] = {}
        self.last_kept: dict[str, float] = {}
        """Per layer, the last step's kept gradient entries over its live weights (read by ``cost.py``)."""

    def _choose_layers(self) -> None:
        layers = self.model.prunable_layers()
        masked = [(lay.name, lay.module) for lay in layers if hasattr(lay.module, MASK_BUFFER)]
        self.layers = masked or [(lay.name, lay.module) for lay in layers if lay.sparse_by_default]
        self.on_masked_layers = bool(masked)

    def on_epoch_start(self, state: TrainState) -> None:
        self.batch = 0

    def after_backward(self, state: TrainState, batch: Batch) -> None:
        if not self.layers:
            self._choose_layers()
        kept = total = 0
        for name, module in self.layers:
            grad = module.weight.grad
            if grad is None:
                continue
            if self.batch % self.refresh == 0:
                weight_mask = getattr(module, MASK_BUFFER, None)
                self.masks[name] = percentile_mask(grad, weight_mask, self.q)
                # counted once per refresh (host syncs), reused until the next one
                self.kept_counts[name] = int(self.masks[name].sum())
                active = int(weight_mask.sum()) if weight_mask is not None else grad.numel()
                # share of the live weights' gradient entries kept (what a sparse weight-gradient kernel computes)
                self.last_kept[name] = self.kept_counts[name] / max(active, 1)
            else:
                grad.mul_(self.masks[name].to(grad.dtype))
            kept += self.kept_counts[name]
            total += grad.numel()
        if self.batch % self.refresh == 0:
            self.refreshes += 1
        self.batch += 1
        self.steps += 1
        self.kept_sum += kept / total if total else 0.0

    def choices(self) -> dict[str, Any]:
        return {
            "percentile": self.q,
            "refresh_every_batches": self.refresh,
            "percentile_over": "the whole tensor, masked weights' zero gradients included (script)",
            "between_refreshes": "previous mask reused, weight mask not re-applied (script's efficient step)",
            "layers": {
                True: "TDM's sparse layers",
                False: "the model's default sparse layers (dense model: the script would mask nothing)",
                None: "not chosen yet (no step trained)",
            }[self.on_masked_layers],
            "order": "after the rehearsal gradient is accumulated (script: after loss.backward on the sum)",
        }

    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        return {
            "continual_dgm": {
                "layers": [name for name, _ in self.layers],
                "mean_kept_fraction": self.kept_sum / self.steps if self.steps else None,
                "refreshes": self.refreshes,
                "choices": self.choices(),
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {"kept_sum": self.kept_sum, "steps": self.steps, "refreshes": self.refreshes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept_sum = float(state["kept_sum"])
        self.steps = int(state["steps"])
        self.refreshes = int(state["refreshes"])
