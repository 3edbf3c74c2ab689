"""The sparse-training engine: one callback that owns the masks and calls the method's rules.

Per step (reference notes Sec. 1.3): forward, backward, **mask the gradients**, optimizer step,
**mask the weights** (and, where the method says so, the momentum). The three maskings happen
inside the trainer's ``MaskedSGD.step()`` (``ops/fused_update.py``, docs/fused_update.md), which the
engine requires; method rules still see the dense gradient in ``after_backward``. A pruned weight is therefore
exactly zero after every step, and a regrown weight starts from zero. Methods only decide masks:

- ``init_masks(ctx)``: the initial mask (random, magnitude, SNIP, GraSP, ...);
- ``on_epoch_start(ctx) -> bool``: epoch-scheduled updates (MEST mutation, SET, SNFS);
- ``after_backward(ctx) -> bool``: step-scheduled updates that read the dense gradient (RigL).

After every mask change the engine zeroes pruned weights, verifies that each layer holds exactly
the number of active weights its target asks for (a run fails loudly on drift), and logs the
realised densities. It also measures ITOP's exploration rate (Liu et al. 2021) and SpFDE's
structural similarity (Sec. 3 of the SpFDE paper; reference notes 5.1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from spfde_core import atomic
from spfde_core.sparsity.distributions import layer_sparsities_from_config
from spfde_core.sparsity.masks import MaskSet, SparseLayer
from spfde_core.sparsity.schemes import get_scheme
from spfde_core.sparsity.schemes.base import Scheme
from spfde_core.train.callbacks import TrainState


class SparsityDriftError(RuntimeError):
    """A layer's realised active-weight count left its target by more than one weight."""


@dataclass
class SparseContext:
    """What a method's rules may use."""

    cfg: DictConfig
    """The method's config node (``cfg.sparsity``)."""
    state: TrainState
    masks: MaskSet
    scheme: Scheme

    def generator(self, *key: Any) -> torch.Generator:
        """A CPU generator that is a pure function of (run seed, key): resumable without saved RNG state."""
        text = repr((int(self.state.cfg.run.seed), "sparsity", *key)).encode()
        seed = int.from_bytes(hashlib.sha256(text).digest()[:8], "little")
        return torch.Generator().manual_seed(seed)

    def expected_count(self, layer: SparseLayer) -> int:
        return self.scheme.active_count(layer.weight.shape, layer.target)

    @property
    def batches_per_epoch(self) -> int:
        loader, cap = self.state.train_loader, self.state.cfg.train.max_batches_per_epoch
        return min(len(loader), cap) if cap else len(loader)

    @property
    def total_steps(self) -> int:
        return self.batches_per_epoch * self.state.cfg.train.epochs


class SparseMethod(Protocol):
    """A sparsity method's rules (see the module docstring). Optional: state_dict/load_state_dict, choices()."""

    def init_masks(self, ctx: SparseContext) -> None: ...
    def on_epoch_start(self, ctx: SparseContext) -> bool: ...
    def after_backward(self, ctx: SparseContext) -> bool: ...


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """|w|^2: additive over a unit, so a block's score is its squared L2 norm (MEST's block rule)."""
    return weight.detach().float().square()


class SparseTraining:
    """The callback every sparse method runs through (see module docstring)."""

    def __init__(self, method: SparseMethod, cfg: DictConfig, state: TrainState) -> None:
        self.method = method
        self.cfg = cfg
        model = state.model
        targets = layer_sparsities_from_config(model, cfg)
        prunable = model.prunable_layers()
        modules = {layer.name: layer.module for layer in prunable}
        self.masks = MaskSet(modules, targets, {layer.name: layer.block for layer in prunable})
        params = {"block": {"block_size": cfg.block_size}, "nm": {"n": cfg.nm_n, "m": cfg.nm_m}}
        self.scheme = get_scheme(cfg.scheme, **params.get(cfg.scheme, {}))
        for layer in self.masks:
            self.scheme.check(layer.weight.shape)
        self.ctx = SparseContext(cfg, state, self.masks, self.scheme)
        # MaskedSGD (spfde_core/ops/fused_update.py) masks grads, weights and momentum in its step;
        # the engine masks only at mask changes.
        if not hasattr(state.optimizer, "register_masks"):
            raise TypeError(f"sparse training needs MaskedSGD, got {type(state.optimizer).__name__}")
        state.optimizer.register_masks({layer.name: layer.module for layer in self.masks}, cfg.reset_momentum)
        self.initialized = False
        self.ever_active: dict[str, torch.Tensor] = {}
        self.snapshots: list[dict[str, torch.Tensor]] = []  # per epoch: packed top-50% positions per layer
        self.updates: list[dict[str, Any]] = []

    # ---- hooks -------------------------------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        if self.initialized:  # resumed: the masks came back with the model's state dict
            return
        self.method.init_masks(self.ctx)
        self._after_change(state, "init")
        self.initialized = True

    def on_epoch_start(self, state: TrainState) -> None:
        if self._call_method(state, "on_epoch_start"):
            self._after_change(state, "epoch_update")

    def after_backward(self, state: TrainState, batch: Any) -> None:
        if self._call_method(state, "after_backward"):
            self._after_change(state, "step_update")

    def _call_method(self, state: TrainState, hook: str) -> bool:
        """Run a method rule on the unfrozen layers only: a frozen block keeps its sparse structure
        (SpFDE Sec. 4.1, Alg. 1: no more mutation and no more updates for it)."""
        frozen = getattr(state.model, "num_frozen_blocks", 0)
        self.ctx.masks = self.masks.subset(frozen) if frozen else self.masks
        try:
            return getattr(self.method, hook)(self.ctx)
        finally:
            self.ctx.masks = self.masks

    def on_epoch_end(self, state: TrainState) -> None:
        self._verify(state, "epoch_end")  # cheap; also catches masks changed behind the engine's back
        state.epoch_log["density"] = self.masks.global_density()
        state.epoch_log["exploration_rate"] = self.exploration_rate()
        self.snapshots.append({layer.name: _pack(top_half_active(layer)) for layer in self.masks})

    # ---- bookkeeping -------------------------------------------------------------------------
    def _after_change(self, state: TrainState, event: str) -> None:
        self.masks.apply_to_weights()
        if self.cfg.reset_momentum:
            self.masks.apply_to_momentum(state.optimizer)
        counts = self._verify(state, event)
        for layer in self.masks:
            previous = self.ever_active.get(layer.name)
            self.ever_active[layer.name] = layer.mask.clone() if previous is None else previous | layer.mask
        self.updates.append(
            {
                "epoch": state.epoch,
                "step": state.step,
                "event": event,
                **{f"active:{k}": v for k, v in counts.items()},
            }
        )

    def _verify(self, state: TrainState, event: str) -> dict[str, int]:
        """Each layer's active count must equal its target's count within one weight."""
        counts = self.masks.active_counts()
        for layer in self.masks:
            expected = self.ctx.expected_count(layer)
            if abs(counts[layer.name] - expected) > 1:
                raise SparsityDriftError(
                    f"{layer.name}: {counts[layer.name]} active weights after {event} at epoch {state.epoch} "
                    f"step {state.step}, expected {expected} (target sparsity {layer.target:.6f})"
                )
        return counts

    def exploration_rate(self) -> float:
        """ITOP's R_s: share of the sparse layers' weights that have ever been active."""
        ever = sum(int(m.sum()) for m in self.ever_active.values())
        return ever / sum(self.masks.sizes().values())

    def structural_similarity(self) -> list[dict[str, Any]]:
        """Per epoch and layer: share of that epoch's top-50% active weights still active in the final mask."""
        rows = []
        for epoch, snapshot in enumerate(self.snapshots):
            row: dict[str, Any] = {"epoch": epoch}
            for layer in self.masks:
                top = _unpack(snapshot[layer.name], layer.mask.shape)
                final = layer.mask.cpu()
                row[layer.name] = float((top & final).sum()) / max(int(top.sum()), 1)
            rows.append(row)
        return rows

    # ---- record and checkpoint ---------------------------------------------------------------
    def record(self, state: TrainState, run_dir: Path) -> dict[str, Any]:
        atomic.write_csv(Path(run_dir) / "sparsity_updates.csv", self.updates)
        atomic.write_csv(Path(run_dir) / "structural_similarity.csv", self.structural_similarity())
        sizes, counts = self.masks.sizes(), self.masks.active_counts()
        choices = self.method.choices() if hasattr(self.method, "choices") else {}
        return {
            "sparsity": {
                "method": self.cfg.name,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                "choices": choices,
                "layers": [
                    {"name": n, "size": sizes[n], "active": counts[n], "target_sparsity": layer.target}
                    for n, layer in zip(sizes, self.masks, strict=True)
                ],
                "sparse_layers_density": self.masks.global_density(),
                "all_prunable_density": _all_prunable_density(state, counts),
                "exploration_rate": self.exploration_rate(),
                "num_mask_updates": len(self.updates) - 1,
                "updates_file": "sparsity_updates.csv",
                "structural_similarity_file": "structural_similarity.csv",
            }
        }

    def state_dict(self) -> dict[str, Any]:
        method_state = self.method.state_dict() if hasattr(self.method, "state_dict") else {}
        return {
            "initialized": self.initialized,
            "targets": [layer.target for layer in self.masks],
            "ever_active": {k: _pack(v) for k, v in self.ever_active.items()},
            "snapshots": self.snapshots,
            "updates": self.updates,
            "method": method_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initialized = state["initialized"]
        for layer, target in zip(self.masks, state["targets"], strict=True):
            layer.target = target
        self.ever_active = {
            layer.name: _unpack(state["ever_active"][layer.name], layer.mask.shape).to(layer.mask.device)
            for layer in self.masks
            if layer.name in state["ever_active"]
        }
        self.snapshots = state["snapshots"]
        self.updates = state["updates"]
        if hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(state["method"])


def top_half_active(layer: SparseLayer) -> torch.Tensor:
    """Positions of the 50% largest-magnitude active weights (SpFDE's structural-similarity set)."""
    magnitude = layer.weight.detach().abs().flatten().float().cpu()
    active = layer.mask.flatten().cpu()
    k = int(active.sum()) // 2
    ranked = torch.where(active, magnitude, torch.full_like(magnitude, -1.0))
    keep = torch.zeros_like(active)
    keep[torch.topk(ranked, k, sorted=False).indices] = True
    return keep.view(layer.mask.shape)


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.flatten().cpu().numpy()))


def _unpack(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n).astype(bool)).view(shape)


def _all_prunable_density(state: TrainState, sparse_counts: dict[str, int]) -> float:
    total = active = 0
    for layer in state.model.prunable_layers():
        n = layer.weight.numel()
        total += n
        active += sparse_counts.get(layer.name, n)
    return active / total
