"""Small helpers of the continual package: seeded generators and the config's derived numbers."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from omegaconf import DictConfig


def cl_generator(seed: int, *key: Any) -> torch.Generator:
    """A CPU generator that is a pure function of (run seed, "continual", key): resumable without RNG state."""
    text = repr((int(seed), "continual", *key)).encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:8], "little"))


def epochs_per_task(cfg: DictConfig) -> int:
    """train.epochs / continual.num_tasks (validated to divide; the script's int(epochs / N_TASKS))."""
    return int(cfg.train.epochs) // int(cfg.continual.num_tasks)


def task_and_epoch(cfg: DictConfig, epoch: int) -> tuple[int, int]:
    """(task, within-task epoch) of a global epoch."""
    per_task = epochs_per_task(cfg)
    return epoch // per_task, epoch % per_task


def is_on(cfg: DictConfig) -> bool:
    """Whether continual learning is configured (the node is absent in configs from before it existed)."""
    node = cfg.get("continual")
    return node is not None and node.name != "none"
