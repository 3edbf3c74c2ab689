"""Initialisation: MEST/GraSP for the CIFAR models, torchvision's for the ImageNet ResNets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spfde_core.models import build_model


def _named(model: nn.Module) -> dict[str, nn.Module]:
    return {layer.name: layer.module for layer in model.prunable_layers()}


def _assert_bn_identity(model: nn.Module) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.affine for m in bns)
    for m in bns:
        assert torch.equal(m.weight, torch.ones_like(m.weight))
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize(("name", "wide_conv"), [("resnet32_w2", "layer3.4.conv2"), ("vgg19", "stage5.3.conv")])
def test_mest_init(name: str, wide_conv: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 100)
    layers = _named(model)
    fc = layers["head.fc"]
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.03)
    assert abs(fc.weight.mean().item()) < 1e-3
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    conv = layers[wide_conv]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.03)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    _assert_bn_identity(model)


def test_resnet32_w2_shortcut_uses_fan_out() -> None:
    torch.manual_seed(0)
    conv = _named(build_model("resnet32_w2", 10))["layer3.0.shortcut.0"]  # fan_out 128 != fan_in 64
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)


def test_resnet18_keeps_torchvision_init() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 1000)
    layers = _named(model)
    conv = layers["layer4.1.conv2"]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.03)
    # torchvision leaves nn.Linear's default U(-1/sqrt(in), 1/sqrt(in)), not MEST's N(0, 0.01^2).
    fc = layers["head.fc"]
    bound = 1 / math.sqrt(512)
    assert fc.weight.abs().max().item() <= bound
    assert fc.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    _assert_bn_identity(model)
