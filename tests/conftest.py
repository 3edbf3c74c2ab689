"""Shared fixtures. Test tiers: bare `pytest` runs unit + smoke; `-m slow` / `-m gpu` the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.cli import load_config


@pytest.fixture(autouse=True, scope="session")
def _layout_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """train.channels_last=auto and train.sparse_kernels=auto cache their measurements under
    $SPFDE_CACHE_DIR (spfde_core/layout_probe.py: channels_last.json; spfde_core/ops/kernel_probe.py:
    sparse_kernels.json): in a temporary folder for the test session, never in the user's ~/.cache;
    subprocesses inherit it. Tests that count measurements point it at their own tmp_path."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPFDE_CACHE_DIR", str(tmp_path_factory.mktemp("spfde-cache")))
    yield
    mp.undo()


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


# Numerics- and kernel-sensitive tests: CI runs them a second time as on an AVX2-only CPU
# (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; README "Run the tests", docs/hardware.md).
ISA_SENSITIVE = (
    "tests/distributed/",
    "tests/ops/",
    "tests/train/test_resume.py",
    "tests/train/test_resume_last_kill_point.py",
    "tests/pipeline/test_dvc_pipeline.py",
    "tests/test_hardware.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(config.rootpath)
    for item in items:
        if Path(item.path).relative_to(root).as_posix().startswith(ISA_SENSITIVE):
            item.add_marker(pytest.mark.isa_sensitive)
