"""Helpers shared by the sieving methods: seeded generators, the initial random split, sizes."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from omegaconf import OmegaConf

from spfde_core.config import ConfigError
from spfde_core.train.callbacks import TrainState


def sieving_generator(seed: int, *key: Any) -> torch.Generator:
    """A CPU generator that is a pure function of (run seed, "sieving", key): resumable without RNG state."""
    text = repr((int(seed), "sieving", *key)).encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:8], "little"))


def count_of(fraction: float, total: int) -> int:
    """``fraction * total`` rounded half up (documented rounding, independent of Python's banker's rounding)."""
    return int(fraction * total + 0.5)


def random_split(seed: int, num_samples: int, num_removed: int, draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (removed, kept) split of ``range(num_samples)``; removed in draw order, kept sorted.

    Draw 0 is the *initial split* shared by ``spfde_circular`` (its initial queue R and partial
    set P) and ``random_fixed`` / ``random_redraw``, so for one seed they start from the same
    random subset; draw j > 0 are the re-draws of ``random_redraw``.
    """
    key = ("initial_split",) if draw == 0 else ("random_subset", int(draw))
    perm = torch.randperm(num_samples, generator=sieving_generator(seed, *key))
    return perm[:num_removed].clone(), perm[num_removed:].sort().values


def training_set_size(state: TrainState) -> int:
    """Number of samples in the full training split (resets the loader's active set to all)."""
    state.train_loader.set_active(None)
    return int(state.train_loader.num_samples)


def stats_device(state: TrainState) -> torch.device:
    """Where per-example statistics live: the train loader's device (batch indices are there)."""
    return torch.device(getattr(state.train_loader, "device", state.device))


def check(condition: bool, field: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"sieving.{field}: expected {expected}, got {value!r}")


def config_dict(cfg: Any) -> dict[str, Any]:
    """A method config (DictConfig in runs, the dataclass in unit tests) as a plain dict."""
    node = cfg if OmegaConf.is_config(cfg) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True)
