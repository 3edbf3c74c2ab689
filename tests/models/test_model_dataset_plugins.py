"""Models and datasets from other packages: entry-point groups spfde.models and spfde.datasets."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

from spfde_core import plugins
from spfde_core.cli import load_config
from spfde_core.config import validate
from spfde_core.data.catalog import DatasetInfo, get_dataset_info
from spfde_core.models import ModelEntry, build_model, model_names


def _register() -> None:
    """What a plugin package's entry point does."""
    from spfde_core.data.catalog import register_dataset
    from spfde_core.models import cifar_resnet, register_model

    register_model(
        "plugin_resnet8",
        ModelEntry(lambda n: cifar_resnet.resnet20(n, 0.25), None, 32, "test plugin (quarter ResNet-20)"),
    )
    register_dataset(DatasetInfo("plugin_cifar5", 5, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True))


@pytest.fixture
def isolated_registries(monkeypatch):
    """What the plugin registers is gone after the test (other tests assert the zoo exactly)."""
    from spfde_core.data import catalog
    from spfde_core.models import MODELS

    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(catalog, "DATASETS", dict(catalog.DATASETS))
    monkeypatch.setattr(catalog, "DATASET_NAMES", catalog.DATASET_NAMES)


def test_model_and_dataset_plugins_register_options(monkeypatch, isolated_registries) -> None:
    module = types.ModuleType("spfde_fake_zoo")
    module.register_model, module.register_dataset = _register, lambda: None
    monkeypatch.setitem(sys.modules, "spfde_fake_zoo", module)
    eps = [
        metadata.EntryPoint(name="zoo", value="spfde_fake_zoo:register_model", group="spfde.models"),
        metadata.EntryPoint(name="zoo", value="spfde_fake_zoo:register_dataset", group="spfde.datasets"),
    ]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.setattr(plugins, "_loaded", {})
    if "plugin_resnet8" not in model_names():
        loaded = plugins.load_plugins()
        assert set(loaded) == {"spfde.models:zoo", "spfde.datasets:zoo"}
    assert get_dataset_info("plugin_cifar5").num_classes == 5
    # Both are Hydra options now, validated like built-ins.
    cfg = load_config(["model=plugin_resnet8", "data=plugin_cifar5", "profile=smoke", "model.width=null"])
    assert (cfg.model.name, cfg.data.name) == ("plugin_resnet8", "plugin_cifar5")
    validate(cfg)
    assert build_model("plugin_resnet8", 5)(__import__("torch").zeros(1, 3, 32, 32)).shape == (1, 5)
    bad = metadata.EntryPoint(name="zoo2", value="spfde_no_such_zoo_xyz", group="spfde.datasets")
    monkeypatch.setattr(plugins, "_entry_points", lambda: [bad])
    with pytest.raises(plugins.PluginError, match="spfde.datasets:zoo2 = spfde_no_such_zoo_xyz"):
        plugins.load_plugins()
