"""Layer-freezing methods (SpFDE progressive freezing and baselines). Registry key = Hydra option.

``none`` never freezes; it builds no callbacks.
"""

from spfde_core.registry import Registry
from spfde_core.train.callbacks import MethodFactory

FREEZING_METHODS: Registry[MethodFactory] = Registry("freezing method")


@FREEZING_METHODS.register("none")
def build_none(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """No freezing: every block trains for the whole run."""
    return []


# Each module registers its methods and config schemas on import.
from spfde_core.freezing import autofreeze, freezeout, linear, spfde_progressive  # noqa: E402, F401
