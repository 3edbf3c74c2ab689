"""Data-sieving methods (SpFDE circular sieving and baselines). Registry key = Hydra option.

``none`` trains on the full training set; it builds no callbacks.
"""

from spfde_core.registry import Registry
from spfde_core.train.callbacks import MethodFactory

SIEVING_METHODS: Registry[MethodFactory] = Registry("sieving method")


@SIEVING_METHODS.register("none")
def build_none(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Full data: every training example in every epoch."""
    return []


# Each module registers its methods and config schemas on import.
from spfde_core.sieving import mest_forgetting, random, spfde_circular  # noqa: E402, F401
