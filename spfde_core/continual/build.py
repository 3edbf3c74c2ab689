"""The continual callbacks of a run, in the order their hooks must run (docs/continual.md).

``run_training`` puts them before every axis's method: the task's active set is set before DDR shrinks it,
and the rehearsal gradient is accumulated before DGM (and any method rule) reads or masks gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from spfde_core.config import ConfigError
from spfde_core.continual.common import is_on
from spfde_core.train.callbacks import TrainState


def continual_callbacks(cfg: DictConfig, state: TrainState) -> list[Any]:
    """[] when continual learning is off; else harness, DDR and DGM where enabled, then the CL cost account."""
    if not is_on(cfg):
        return []
    from spfde_core.continual.cost import ContinualCost
    from spfde_core.continual.ddr import DynamicDataRemoval
    from spfde_core.continual.dgm import DynamicGradientMasking
    from spfde_core.continual.harness import ContinualHarness

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ConfigError("continual.name: continual learning runs in a single process (no torchrun) for now")
    try:  # checks that need the data (classes per task, DDR's removals against task sizes): before compute
        harness = ContinualHarness(cfg, state)
        callbacks: list[Any] = [harness]
        if cfg.continual.ddr.enabled:
            callbacks.append(DynamicDataRemoval(cfg, state, harness))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    dgm = DynamicGradientMasking(cfg, state) if cfg.continual.dgm.enabled else None
    if dgm is not None:
        callbacks.append(dgm)
    callbacks.append(ContinualCost(cfg, harness, dgm))  # last: reads the replay and DGM of the step
    return callbacks
