"""Block partition, prunable-layer conventions, and block-wise forward against references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet
from zoo_test_utils import ALL_MODELS, input_batch

from spfde_core.models import build_model
from spfde_core.models.imagenet_resnet import ImageNetResNet


def test_resnet32_w2_block_names() -> None:
    model = build_model("resnet32_w2", 10)
    expected = ["stem"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(5)] + ["head"]
    assert model.block_names == expected
    assert len(model.blocks) == 17


def test_vgg19_block_names_and_pools() -> None:
    model = build_model("vgg19", 10)
    sizes = [2, 2, 4, 4, 4]
    expected = [f"stage{s}.{j}" for s, n in enumerate(sizes, start=1) for j in range(n)] + ["head"]
    assert model.block_names == expected
    pooled = [name for name, block in model.named_blocks() if hasattr(block, "pool") and name != "head"]
    # Max-pools ride on the last unit of stages 1-4; stage 5 has none (GraSP: no final max-pool).
    assert pooled == ["stage1.1", "stage2.1", "stage3.3", "stage4.3"]
    assert model.mest_layer_names["stage1.0.conv"] == "features.0"
    assert model.mest_layer_names["stage2.0.conv"] == "features.7"
    assert model.mest_layer_names["stage5.3.conv"] == "features.49"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_parameter_in_exactly_one_block(name: str) -> None:
    model = build_model(name, 10)
    seen: list[int] = [id(p) for block in model.blocks for p in block.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}
    for layer in model.prunable_layers():
        block = model.blocks[layer.block]
        assert any(m is layer.module for m in block.modules())


def test_resnet32_w2_sparse_convention() -> None:
    layers = build_model("resnet32_w2", 10).prunable_layers()
    sparse = [layer for layer in layers if layer.sparse_by_default]
    assert len(sparse) == 30
    assert all(isinstance(x.module, nn.Conv2d) and x.module.kernel_size == (3, 3) for x in sparse)
    assert all(x.name.rsplit(".", 1)[-1] in ("conv1", "conv2") for x in sparse)
    dense = {layer.name for layer in layers if not layer.sparse_by_default}
    assert dense == {"stem.conv", "layer2.0.shortcut.0", "layer3.0.shortcut.0", "head.fc"}


def test_vgg19_sparse_convention() -> None:
    layers = build_model("vgg19", 10).prunable_layers()
    convs = [x for x in layers if isinstance(x.module, nn.Conv2d)]
    assert len(convs) == 16
    assert not convs[0].sparse_by_default and convs[0].module.in_channels == 3
    assert all(x.sparse_by_default for x in convs[1:])
    assert [x.name for x in layers if isinstance(x.module, nn.Linear)] == ["head.fc"]
    assert not layers[-1].sparse_by_default


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_sparse_convention(name: str) -> None:
    layers = build_model(name, 1000).prunable_layers()
    dense = [x.name for x in layers if not x.sparse_by_default]
    assert dense == ["stem.conv1", "head.fc"]
    assert any(x.name.endswith("downsample.0") and x.sparse_by_default for x in layers)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding)


def reference_cifar_resnet(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MEST's ResNet forward written out functionally from the weights (eval-mode BN)."""
    blocks = dict(model.named_blocks())
    x = F.relu(_bn(_conv(x, blocks["stem"].conv), blocks["stem"].bn))
    for name in model.block_names[1:-1]:
        b = blocks[name]
        out = F.relu(_bn(_conv(x, b.conv1), b.bn1))
        out = _bn(_conv(out, b.conv2), b.bn2)
        if isinstance(b.shortcut, nn.Sequential):
            x = _bn(_conv(x, b.shortcut[0]), b.shortcut[1])
        x = F.relu(out + x)
    fc = blocks["head"].fc
    return F.linear(x.mean(dim=(2, 3)), fc.weight, fc.bias)


def reference_vgg(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GraSP's VGG forward written out from the config and the weights (eval-mode BN)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    pool_after = {1, 3, 7, 11}  # conv indices followed by "M" in 64,64,M,128,128,M,256x4,M,512x4,M,512x4
    for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
        x = F.relu(_bn(_conv(x, conv), bn))
        if i in pool_after:
            x = F.max_pool2d(x, 2)
    x = F.avg_pool2d(x, 2).flatten(1)
    fc = model.blocks[-1].fc
    return F.linear(x, fc.weight, fc.bias)


def _randomise_bn_stats(model: nn.Module) -> None:
    # Non-trivial running stats and affine params, so a misplaced BN cannot go unnoticed.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


@pytest.mark.parametrize(
    ("name", "reference"),
    [("resnet20", reference_cifar_resnet), ("resnet32_w2", reference_cifar_resnet), ("vgg19", reference_vgg)],
)
def test_chained_blocks_match_reference_forward(name: str, reference) -> None:
    model = build_model(name, 10)
    _randomise_bn_stats(model)
    model.eval()
    x = input_batch(name)
    with torch.no_grad():
        chained = x
        for block in model.blocks:
            chained = block(chained)
        torch.testing.assert_close(chained, reference(model, x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), chained, rtol=0, atol=0)


@pytest.mark.parametrize("factory", [resnet.resnet18, resnet.resnet50])
def test_imagenet_blocks_reproduce_torchvision(factory) -> None:
    torch.manual_seed(3)
    reference = factory(weights=None, num_classes=10)
    torch.manual_seed(3)
    model = ImageNetResNet(factory(weights=None, num_classes=10))
    _randomise_bn_stats(reference)
    # Strict load: every entry of our model is mapped from the torchvision one, and vice versa.
    state = {
        f"blocks.{i}.{k}": v for i in range(len(model.blocks)) for k, v in _block_state(reference, model, i).items()
    }
    assert len(state) == len(reference.state_dict())
    model.load_state_dict(state)
    reference.eval()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def _block_state(reference: nn.Module, model: ImageNetResNet, index: int) -> dict[str, torch.Tensor]:
    """The reference's state entries for block ``index``, keyed as inside that block."""
    name = model.block_names[index]
    state = reference.state_dict()
    if name == "stem":
        return {k: v for k, v in state.items() if k.startswith(("conv1.", "bn1."))}
    if name == "head":
        return {k: v for k, v in state.items() if k.startswith("fc.")}
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
