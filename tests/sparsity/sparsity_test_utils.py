"""Helpers for sparsity tests: a hand-built context around plain layers, and a step-invariant checker."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from torch import nn

from spfde_core.sparsity.engine import SparseContext
from spfde_core.sparsity.masks import MaskSet
from spfde_core.sparsity.schemes import get_scheme


def hand_context(weights: dict[str, torch.Tensor], targets: dict[str, float], method_cfg, epochs: int = 160):
    """A SparseContext over conv layers holding exactly ``weights`` (no model, no trainer)."""
    modules = {}
    for name, w in weights.items():
        conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
        with torch.no_grad():
            conv.weight.copy_(w)
        modules[name] = conv
    masks = MaskSet(modules, targets)
    root = OmegaConf.create({"run": {"seed": 0}, "train": {"epochs": epochs, "max_batches_per_epoch": None}})
    state = SimpleNamespace(cfg=root, epoch=0, step=0, train_loader=[None] * 10, cost_events=[])
    cfg = OmegaConf.structured(method_cfg)
    return SparseContext(cfg, state, masks, get_scheme("unstructured"))


class StepInvariants:
    """After every optimizer step: inactive weights are exactly zero; counts the steps checked."""

    def __init__(self) -> None:
        self.steps = 0
        self.mask_history: list[torch.Tensor] = []

    def after_step(self, state, step) -> None:
        masked = [m for m in state.model.modules() if hasattr(m, "weight_mask")]
        assert masked, "no masks registered"
        for module in masked:
            assert torch.all(module.weight[~module.weight_mask] == 0)
        self.steps += 1

    def on_epoch_end(self, state) -> None:
        masks = [m.weight_mask.clone() for m in state.model.modules() if hasattr(m, "weight_mask")]
        self.mask_history.append(torch.cat([m.flatten() for m in masks]))
