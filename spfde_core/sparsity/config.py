"""Config fields shared by every sparse method (each method's dataclass extends SparseConfig).

Besides its fields, a method's config states what the rest of the library needs to know about the
method without running it, each overridden in the method's own file:

- ``mutation_interval_epochs(epochs)``: epochs between mask updates, if it has an epoch schedule
  (progressive freezing freezes on it);
- ``predicted_sparsities(targets, epochs)``: per epoch, each sparse layer's sparsity between updates;
- ``predicted_overheads(run)``: FLOPs spent outside the plain training steps (dense weight
  gradients, scoring passes), as the cost meter charges the method's ``CostEvent`` s.

``spfde cost`` (``cost/predict.py``) reads only these; ``tests/cost/test_predict_matches_meter.py``
holds every registered method to what the meter measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from spfde_core.config import MethodConfig, domain

if TYPE_CHECKING:
    from spfde_core.cost.events import Overheads, RunShape


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

    def mutation_interval_epochs(self, epochs: int) -> int | None:
        """Epochs between mask updates of an epoch-scheduled method; None = no epoch schedule."""
        return None

    def predicted_sparsities(self, targets: dict[str, float], epochs: int) -> list[dict[str, float]]:
        """Per training epoch, each sparse layer's sparsity between mask updates (default: its target)."""
        return [dict(targets) for _ in range(epochs)]

    def predicted_overheads(self, run: RunShape) -> Overheads:
        """FLOPs the method spends outside the training steps (default: none)."""
        from spfde_core.cost.events import Overheads

        return Overheads()


def sparse_config(node: DictConfig) -> SparseConfig | None:
    """The typed config of a ``cfg.sparsity`` node; None for ``dense`` (no SparseConfig schema)."""
    node_type = OmegaConf.get_type(node)
    if node_type is None or not issubclass(node_type, SparseConfig):
        return None
    return OmegaConf.to_object(node)
