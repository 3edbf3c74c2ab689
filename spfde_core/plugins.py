"""Methods from other installed packages, through the ``spfde.methods`` entry-point group.

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

``spfde`` loads the group before composing a config (``load_config``) and before listing methods.
A plugin that fails to import stops the command with a message naming the entry point.
"""

from __future__ import annotations

import logging
from importlib import metadata
from types import ModuleType

log = logging.getLogger("spfde_core.plugins")

GROUP = "spfde.methods"
_loaded: dict[str, str] = {}
"""entry-point name -> distribution that provided it (``name version``)."""


class PluginError(RuntimeError):
    """An entry point of the ``spfde.methods`` group that cannot be loaded."""


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value))


def load_plugins() -> dict[str, str]:
    """Import every ``spfde.methods`` entry point once; returns name -> providing distribution."""
    for ep in _entry_points():
        if ep.name in _loaded:
            continue
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, ModuleType | type):
                obj()
        except Exception as err:  # noqa: BLE001 - any failure of third-party code is reported the same way
            raise PluginError(f"entry point {GROUP}:{ep.name} = {ep.value} failed to load: {err}") from err
        dist = getattr(ep, "dist", None)
        _loaded[ep.name] = f"{dist.name} {dist.version}" if dist is not None else "unknown"
        log.debug("loaded external method %s from %s", ep.name, _loaded[ep.name])
    return dict(_loaded)


def external_methods() -> dict[str, str]:
    """The external methods loaded so far (name -> distribution), e.g. to exempt them from file checks."""
    return dict(_loaded)
