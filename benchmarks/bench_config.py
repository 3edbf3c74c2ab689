"""The trainer config the throughput benchmarks share: synthetic data, a fixed number of full batches."""

from __future__ import annotations

from omegaconf import DictConfig

from spfde_core.cli import load_config


def throughput_config(model: str, batch: int, batches: int, prepared: str, overrides: list[str]) -> DictConfig:
    """``model`` at its default width, ``batches`` batches of ``batch`` synthetic images per epoch."""
    return load_config(
        [
            "profile=smoke",
            f"model={model}",
            "model.width=null",
            f"train.batch_size={batch}",
            f"train.max_batches_per_epoch={batches}",
            "train.progress=false",
            f"data.prepared_dir={prepared}",
            f"data.synthetic.num_train={batch * batches}",
            *overrides,
        ]
    )
