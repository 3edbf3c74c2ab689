"""Shared fixtures. Test tiers: bare `pytest` runs unit + smoke; `-m slow` / `-m gpu` the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.cli import load_config


@pytest.fixture
def smoke_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a seconds-long synthetic run writing everything under tmp_path."""
    return [
        "profile=smoke",
        f"data.prepared_dir={tmp_path / 'prepared'}",
        f"run.results_dir={tmp_path / 'runs'}",
        f"run.checkpoint_dir={tmp_path / 'checkpoints'}",
        "run.reproduction=test",
        "run.row=smoke",
        "train.progress=false",
    ]


@pytest.fixture
def smoke_cfg(smoke_overrides: list[str]):
    return load_config(smoke_overrides)
