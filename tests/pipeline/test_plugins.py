"""Methods from other installed packages (entry-point group spfde.methods): loaded, trained, on the board."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from spfde_core import plugins
from spfde_core.board import build_board

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A fake external package: a static-sparsity method registered from outside spfde_core."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseTraining
from spfde_core.sparsity.static import Static


@dataclass
class FakeStaticConfig(SparseConfig):
    name: str = "fake_static"
    init: str = "random"


@SPARSITY_METHODS.register("fake_static")
def build_fake_static(cfg, state):
    """Fake external static sparsity (spfde-fake-plugin, test only)."""
    return [SparseTraining(Static(cfg), cfg, state)]


# The Hydra option is the ConfigStore node itself: no yaml file under spfde_core/conf is needed.
ConfigStore.instance().store(group="sparsity", name="fake_static", node=FakeStaticConfig)
'''


def make_distribution(site: Path) -> None:
    """A tiny installed distribution: a package plus its dist-info with an entry point."""
    (site / "spfde_fake_plugin").mkdir(parents=True)
    (site / "spfde_fake_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "spfde_fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spfde-fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[spfde.methods]\nfake_static = spfde_fake_plugin\n")


def test_entry_points_are_loaded_once_and_failures_name_the_entry_point(monkeypatch) -> None:
    calls = []
    module = types.ModuleType("spfde_fake_registrar")
    module.register = lambda: calls.append("registered")
    monkeypatch.setitem(sys.modules, "spfde_fake_registrar", module)
    good = metadata.EntryPoint(name="fake_fn", value="spfde_fake_registrar:register", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "_entry_points", lambda: [good])
    monkeypatch.setattr(plugins, "_loaded", {})
    assert "fake_fn" in plugins.load_plugins()
    plugins.load_plugins()
    assert calls == ["registered"]
    bad = metadata.EntryPoint(name="broken", value="spfde_no_such_module_xyz", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "_entry_points", lambda: [bad])
    with pytest.raises(plugins.PluginError, match="spfde.methods:broken = spfde_no_such_module_xyz"):
        plugins.load_plugins()


@pytest.mark.smoke
def test_external_method_trains_and_appears_on_the_leaderboard(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_distribution(site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "spfde_core.cli"]
    listed = subprocess.run([*cli, "list", "methods"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.split()[:1] == ["fake_static"] and "spfde-fake-plugin" in line for line in listed.stdout.splitlines()
    )
    train = [
        *cli,
        "train",
        "profile=smoke",
        "sparsity=fake_static",
        "sparsity.target=0.5",
        "train.epochs=1",
        "run.reproduction=open",
        "run.row=smoke-fake_static",
        f"data.prepared_dir={tmp_path / 'prepared'}",
        f"run.results_dir={tmp_path / 'results' / 'runs'}",
        f"run.checkpoint_dir={tmp_path / 'ckpt'}",
    ]
    done = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = build_board(tmp_path, plots=False)
    assert result.records == 1
    md = result.markdown.read_text()
    assert "`fake_static + none + none`" in md and "smoke-fake_static" in md
