"""Weight-sparsity methods (issue: sparse training engine). Registry key = Hydra option = file name.

``dense`` trains every weight; it builds no callbacks.
"""

from spfde_core.registry import Registry
from spfde_core.train.callbacks import MethodFactory

SPARSITY_METHODS: Registry[MethodFactory] = Registry("sparsity method")


@SPARSITY_METHODS.register("dense")
def build_dense(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    return []
