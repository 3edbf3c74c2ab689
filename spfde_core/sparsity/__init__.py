"""Weight-sparsity methods (issue: sparse training engine). Registry key = Hydra option = file name.

``dense`` trains every weight and builds no callbacks. Every other method runs through
``engine.SparseTraining`` (masks as buffers, gradient and weight masking, density checks,
exploration rate and structural similarity), and supplies only its mask rules.
"""

from spfde_core.registry import Registry
from spfde_core.train.callbacks import MethodFactory

SPARSITY_METHODS: Registry[MethodFactory] = Registry("sparsity method")


@SPARSITY_METHODS.register("dense")
def build_dense(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """Dense training: every weight active (the reference row of every table)."""
    return []


# Each module registers its methods and config schemas on import.
from spfde_core.sparsity import dsr, grasp, mest, rigl, set, snfs, snip, sparcl_tdm, static  # noqa: E402, F401
