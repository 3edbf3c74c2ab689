"""Parameter and MAC counts of every model against an analytic spec, FlopCounterMode and pins."""

from __future__ import annotations

import pytest
import torch
from model_arch_spec import spec_for
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from zoo_test_utils import ALL_MODELS, IMAGENET_MODELS, input_batch

from spfde_core.models import build_model


def num_classes_for(name: str) -> int:
    return 1000 if name in IMAGENET_MODELS else 10


# Literal pins (params incl. BN and fc bias; dense conv+linear forward MACs per image at the
# model's input size; CIFAR models with 10 classes, ImageNet models with 1000). They agree with the
# analytic spec and with the literature: ResNet-18 1.81 GMACs, ResNet-50 4.09 GMACs.
PINNED = {
    "resnet20": (272_474, 40_813_184),
    "resnet32": (466_906, 69_124_736),
    "resnet56": (855_770, 125_747_840),
    "resnet32_w2": (1_860_522, 275_612_928),
    "vgg19": (20_035_018, 398_136_320),
    "resnet18_cifar": (11_173_962, 555_422_720),  # mammoth / SparCL's CIFAR ResNet-18: 11.17 M parameters
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet50": (25_557_032, 4_089_184_256),
}


def measure(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple[int, int, bool]], int]:
    """Per-layer (weight params, MACs per image, sparse_by_default) via hooks, and FlopCounter FLOPs."""
    layers = {layer.module: layer for layer in model.prunable_layers()}
    measured: dict[str, tuple[int, int, bool]] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        layer = layers[module]
        per_output = module.weight[0].numel()  # MACs per output element: cin/groups * kh * kw, or cin
        macs = output[0].numel() * per_output  # per image
        measured[layer.name] = (module.weight.numel(), macs, layer.sparse_by_default)

    handles = [module.register_forward_hook(hook) for module in layers]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    for handle in handles:
        handle.remove()
    return measured, counter.get_total_flops()


@pytest.fixture(scope="module", params=ALL_MODELS)
def counted(request: pytest.FixtureRequest):
    name = request.param
    model = build_model(name, num_classes_for(name))
    measured, flops = measure(model, input_batch(name, batch=1))
    return name, model, measured, flops


def test_layers_match_analytic_spec(counted) -> None:
    name, model, measured, _ = counted
    spec = spec_for(name, num_classes_for(name))
    expected = {layer.name: (layer.params, layer.macs, layer.sparse) for layer in spec.layers}
    assert measured == expected
    # prunable_layers() lists them in forward (block) order, like the spec.
    assert [layer.name for layer in model.prunable_layers()] == [layer.name for layer in spec.layers]


def test_totals_match_spec_flop_counter_and_pins(counted) -> None:
    name, model, measured, flops = counted
    spec = spec_for(name, num_classes_for(name))
    params = sum(p.numel() for p in model.parameters())
    macs = sum(m for _, m, _ in measured.values())
    assert params == spec.total_params == PINNED[name][0]
    assert macs == spec.total_macs == PINNED[name][1]
    # FlopCounterMode counts 2 FLOPs per MAC of convs and matmuls only (no BN/ReLU/pool).
    assert flops == 2 * macs


def test_resnet32_w2_matches_mest_reference_numbers() -> None:
    model = build_model("resnet32_w2", 10)
    measured, _ = measure(model, input_batch("resnet32_w2", batch=1))
    sparse = {n: v for n, v in measured.items() if v[2]}
    dense_convs = {n: v for n, v in measured.items() if not v[2] and n != "head.fc"}
    assert sum(p for p, _, _ in sparse.values()) == 1_843_200
    assert {n: p for n, (p, _, _) in dense_convs.items()} == {
        "stem.conv": 864,
        "layer2.0.shortcut.0": 2_048,
        "layer3.0.shortcut.0": 8_192,
    }
    assert sum(p for p, _, _ in dense_convs.values()) == 11_104
    fc = model.blocks[-1].fc
    assert fc.weight.numel() + fc.bias.numel() == 1_290
    assert round(sum(m for _, m, _ in sparse.values()) / 1e6, 2) == 273.68
    assert round(sum(m for _, m, _ in dense_convs.values()) / 1e6, 2) == 1.93


def test_resnet32_w2_cifar100_classifier() -> None:
    fc = build_model("resnet32_w2", 100).blocks[-1].fc
    assert fc.weight.numel() + fc.bias.numel() == 12_900


def test_imagenet_resnets_have_well_known_parameter_counts() -> None:
    assert sum(p.numel() for p in build_model("resnet18", 1000).parameters()) == 11_689_512
    assert sum(p.numel() for p in build_model("resnet50", 1000).parameters()) == 25_557_032


def test_width_multiplier_scales_like_the_spec() -> None:
    from model_arch_spec import cifar_resnet

    model = build_model("resnet20", 10, width=0.5)
    measured, flops = measure(model, input_batch("resnet20", batch=1))
    spec = cifar_resnet(20, 0.5, 10)
    assert measured == {layer.name: (layer.params, layer.macs, layer.sparse) for layer in spec.layers}
    assert sum(p.numel() for p in model.parameters()) == spec.total_params
