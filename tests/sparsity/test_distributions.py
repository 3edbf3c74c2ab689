"""Layer-wise sparsity distributions: which layers are sparse and how the target is split."""

from __future__ import annotations

import pytest

from spfde_core.models import build_model
from spfde_core.sparsity.distributions import erk, layer_sparsities, select_sparse_layers


def test_uniform_follows_the_mest_convention_on_resnet32_w2() -> None:
    model = build_model("resnet32_w2", 10)
    sparsities = layer_sparsities(model, "uniform", 0.9)
    assert len(sparsities) == 30 and set(sparsities.values()) == {0.9}
    assert all(name.endswith(("conv1", "conv2")) and name.startswith("layer") for name in sparsities)
    # The stem conv, the 1x1 shortcuts and the classifier stay dense.
    assert not {"stem.conv", "layer2.0.shortcut.0", "head.fc"} & set(sparsities)


def test_all_layers_keeps_only_the_first_conv_dense_and_keep_dense_patterns_apply() -> None:
    model = build_model("resnet20", 10)
    names = [layer.name for layer in select_sparse_layers(model, "all", [])]
    assert "stem.conv" not in names and "head.fc" in names and "layer2.0.shortcut.0" in names
    names = [layer.name for layer in select_sparse_layers(model, "all", ["head.*", "*.shortcut.*"])]
    assert "head.fc" not in names and not any("shortcut" in n for n in names)


def test_erk_meets_the_target_and_gives_small_layers_more_density() -> None:
    model = build_model("resnet20", 10)
    layers = select_sparse_layers(model, "all", [])
    sparsities = erk(layers, 0.9)
    sizes = {layer.name: layer.weight.numel() for layer in layers}
    active = sum((1 - sparsities[n]) * sizes[n] for n in sizes)
    assert active == pytest.approx(0.1 * sum(sizes.values()), rel=1e-9)
    # Independent ERK ratio: density is proportional to sum(shape)/prod(shape) where no layer is dense.
    a, b = "layer1.0.conv1", "layer3.0.conv2"
    shape = {layer.name: layer.weight.shape for layer in layers}
    ratio = (sum(shape[a]) / sizes[a]) / (sum(shape[b]) / sizes[b])
    assert (1 - sparsities[a]) / (1 - sparsities[b]) == pytest.approx(ratio)
    assert sparsities["head.fc"] < 0.9 or sparsities["head.fc"] == 0.0


def test_erk_makes_overflowing_layers_dense_and_resolves() -> None:
    model = build_model("resnet20", 10)
    layers = select_sparse_layers(model, "all", [])
    sparsities = erk(layers, 0.5)  # at low sparsity small layers would exceed density 1
    assert min(sparsities.values()) == 0.0
    sizes = {layer.name: layer.weight.numel() for layer in layers}
    active = sum((1 - sparsities[n]) * sizes[n] for n in sizes)
    assert active == pytest.approx(0.5 * sum(sizes.values()), rel=1e-9)
    assert all(0.0 <= s < 1 for s in sparsities.values())


def test_explicit_map_like_mest_uneven_profile() -> None:
    model = build_model("resnet32_w2", 10)
    layer_map = {"layer1.0.conv1": 0.6, "layer1.0.conv2": 0.7, "layer1.1.conv1": 0.9}
    assert layer_sparsities(model, "map", 0.9, layer_map=layer_map) == layer_map
    with pytest.raises(ValueError, match="unknown layers"):
        layer_sparsities(model, "map", 0.9, layer_map={"layer9.0.conv1": 0.9})
