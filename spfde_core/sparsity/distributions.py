"""Layer-wise sparsity distributions: which layers are sparse and at what per-layer sparsity.

- uniform: every sparse layer at the target (MEST, SpFDE; RigL's "uniform" keeps the first layer dense);
- erk: Erdos-Renyi-Kernel (Evci et al. 2020, Sec. 3 / RigL code ``sparse_utils.get_sparsities``):
  density_l = eps * (sum of the layer's dims) / (product of its dims), raised to ``power_scale``;
  eps solved so the sparse layers hold exactly (1 - target) of their weights; layers whose
  density would exceed 1 are made dense and eps re-solved;
- map: an explicit per-layer sparsity (MEST's YAML profiles; e.g. its ``resnet32_0.9_uneven``).
"""

from __future__ import annotations

import fnmatch
import math

from spfde_core.models.base import BlockModel, PrunableLayer


def select_sparse_layers(model: BlockModel, layers: str, keep_dense: list[str]) -> list[PrunableLayer]:
    """The prunable layers a method sparsifies, in model order."""
    prunable = model.prunable_layers()
    if layers == "paper":
        chosen = [layer for layer in prunable if layer.sparse_by_default]
    elif layers == "all":
        first_conv = next(layer.name for layer in prunable if layer.weight.dim() == 4)
        chosen = [layer for layer in prunable if layer.name != first_conv]
    else:
        raise ValueError(f"sparsity.layers: expected paper or all, got {layers!r}")
    return [layer for layer in chosen if not any(fnmatch.fnmatch(layer.name, p) for p in keep_dense)]


def uniform(layers: list[PrunableLayer], target: float) -> dict[str, float]:
    return {layer.name: target for layer in layers}


def erk(layers: list[PrunableLayer], target: float, power_scale: float = 1.0) -> dict[str, float]:
    """Per-layer sparsities whose weighted mean over the layers is ``target`` (ERK)."""
    sizes = {layer.name: layer.weight.numel() for layer in layers}
    raw = {layer.name: (sum(layer.weight.shape) / layer.weight.numel()) ** power_scale for layer in layers}
    budget = (1 - target) * sum(sizes.values())  # active weights to share out
    dense: set[str] = set()
    while True:
        free = [name for name in sizes if name not in dense]
        eps = (budget - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in free)
        overflow = {n for n in free if eps * raw[n] > 1}
        if not overflow:
            break
        dense |= overflow  # these layers are dense; re-solve eps for the rest (RigL does the same)
    return {name: 0.0 if name in dense else 1 - eps * raw[name] for name in sizes}


def explicit(layers: list[PrunableLayer], layer_map: dict[str, float]) -> dict[str, float]:
    known = {layer.name for layer in layers}
    unknown = sorted(set(layer_map) - known)
    if unknown:
        raise ValueError(f"sparsity.layer_map: unknown layers {unknown}; prunable layers are {sorted(known)}")
    return dict(layer_map)


def layer_sparsities(
    model: BlockModel,
    distribution: str,
    target: float,
    layers: str = "paper",
    keep_dense: list[str] | None = None,
    layer_map: dict[str, float] | None = None,
    erk_power_scale: float = 1.0,
) -> dict[str, float]:
    """Per-layer target sparsity of every sparse layer (dense layers are not listed)."""
    if distribution == "map":
        every = [layer for layer in model.prunable_layers()]
        return explicit(every, layer_map or {})
    chosen = select_sparse_layers(model, layers, keep_dense or [])
    if distribution == "uniform":
        return uniform(chosen, target)
    if distribution == "erk":
        return erk(chosen, target, erk_power_scale)
    raise ValueError(f"sparsity.distribution: expected uniform, erk or map, got {distribution!r}")


def overall_sparsity(sparsities: dict[str, float], sizes: dict[str, int]) -> float:
    """Weighted mean sparsity over the listed layers."""
    total = sum(sizes[n] for n in sparsities)
    return sum(sparsities[n] * sizes[n] for n in sparsities) / total if total else math.nan


def layer_sparsities_from_config(model: BlockModel, sparsity) -> dict[str, float]:  # noqa: ANN001 - a config node
    """``layer_sparsities`` with every setting read from a sparse method's config node (``cfg.sparsity``)."""
    return layer_sparsities(
        model,
        sparsity.distribution,
        sparsity.target,
        layers=sparsity.layers,
        keep_dense=list(sparsity.keep_dense),
        layer_map=dict(sparsity.layer_map),
        erk_power_scale=sparsity.erk_power_scale,
    )
