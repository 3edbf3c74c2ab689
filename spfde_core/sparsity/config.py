"""Config fields shared by every sparse method (each method's dataclass extends SparseConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spfde_core.config import MethodConfig, domain


@dataclass
class SparseConfig(MethodConfig):
    target: float = domain("[0, 1)", 0.9, what="a sparsity")
    """Sparsity (fraction of zeros) over the sparse layers: the papers' "sparsity" column."""
    distribution: str = "uniform"
    """How the target splits over layers: uniform, erk (RigL's Erdos-Renyi-Kernel) or map."""
    layer_map: dict[str, float] = field(default_factory=dict)
    """distribution=map: per-layer sparsity of each sparse layer (MEST's YAML profiles); unlisted layers stay dense."""
    layers: str = "paper"
    """Which prunable layers are sparse: paper (the model's source convention, e.g. MEST keeps the stem
    conv, 1x1 shortcuts and classifier dense) or all (every conv/linear except the first conv)."""
    keep_dense: list[str] = field(default_factory=list)
    """Extra layer-name patterns (fnmatch, e.g. 'head.*') kept dense."""
    scheme: str = "unstructured"
    """Shape of the zeros: unstructured, block, pattern, nm or channel."""
    block_size: int = domain("[1, inf)", 4)
    """scheme=block: output filters per block (MEST: 4x1 column blocks)."""
    nm_n: int = domain("[1, inf)", 2)
    """scheme=nm: N kept weights..."""
    nm_m: int = domain("[1, inf)", 4)
    """...in every group of M (2:4)."""
    erk_power_scale: float = domain("[0, inf)", 1.0)
    """distribution=erk: exponent on the ERK density ratio (RigL's erk_power_scale; 1 = plain ERK)."""
    reset_momentum: bool = True
    """Zero the momentum of inactive weights after every step, so regrown weights start with zero
    momentum (sparse_learning / RigL); MEST's code never resets it (its configs set false)."""
