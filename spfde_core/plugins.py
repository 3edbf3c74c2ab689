"""Methods, models and datasets from other installed packages, through entry-point groups.

Groups: ``spfde.methods``, ``spfde.models`` and ``spfde.datasets``; each entry point is loaded the same way.

An external package declares, in its ``pyproject.toml``::

    [project.entry-points."spfde.methods"]
    my_sparse = "my_pkg.my_sparse"          # a module that registers itself on import
    # or "my_pkg:register"                   # a zero-argument function that registers

and, on import (or when that function is called), does what a built-in method does, minus the yaml:

1. registers a builder: ``@SPARSITY_METHODS.register("my_sparse")`` (or FREEZING_/SIEVING_METHODS);
2. stores its config dataclass as the Hydra option itself:
   ``ConfigStore.instance().store(group="sparsity", name="my_sparse", node=MySparseConfig)``
   (``name`` field defaulting to "my_sparse"). Hydra selects ConfigStore nodes like yaml files, so
   ``spfde train sparsity=my_sparse sparsity.target=0.9`` works without a file under spfde_core/conf.

A model (``spfde.models``) calls ``spfde_core.models.register_model("my_net", ModelEntry(builder, None, 32,
"source"))``, its builder returning a ``BlockModel`` (models/base.py; a timm model: models/timm_adapter.py);
a dataset (``spfde.datasets``) calls ``spfde_core.data.catalog.register_dataset(DatasetInfo(...))`` and is
then prepared from an ImageFolder tree or a Hugging Face dataset (``spfde data prepare my_data
data.source=imagefolder data.path=...``). Both become Hydra options (``model=my_net``, ``data=my_data``).

``spfde`` loads the groups before composing a config (``load_config``) and before listing.
A plugin that fails to import stops the command with a message naming the entry point.
"""

from __future__ import annotations

import logging
from importlib import metadata
from types import ModuleType

log = logging.getLogger("spfde_core.plugins")

GROUP = "spfde.methods"
GROUPS = (GROUP, "spfde.models", "spfde.datasets")
_loaded: dict[str, str] = {}
"""entry-point name -> distribution that provided it (``name version``)."""


class PluginError(RuntimeError):
    """An entry point of one of the ``GROUPS`` that cannot be loaded."""


def _entry_points() -> list[metadata.EntryPoint]:
    eps = [ep for group in GROUPS for ep in metadata.entry_points(group=group)]
    return sorted(eps, key=lambda ep: (GROUPS.index(ep.group), ep.name, ep.value))


def load_plugins() -> dict[str, str]:
    """Import every entry point of the ``GROUPS`` once; returns name -> providing distribution."""
    for ep in _entry_points():
        key = ep.name if ep.group == GROUP else f"{ep.group}:{ep.name}"  # methods keep their bare names
        if key in _loaded:
            continue
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, ModuleType | type):
                obj()
        except Exception as err:  # noqa: BLE001 - any failure of third-party code is reported the same way
            raise PluginError(f"entry point {ep.group}:{ep.name} = {ep.value} failed to load: {err}") from err
        dist = getattr(ep, "dist", None)
        _loaded[key] = f"{dist.name} {dist.version}" if dist is not None else "unknown"
        log.debug("loaded plugin %s from %s", key, _loaded[key])
    return dict(_loaded)


def external_methods() -> dict[str, str]:
    """The external methods loaded so far (name -> distribution), e.g. to exempt them from file checks."""
    return dict(_loaded)
