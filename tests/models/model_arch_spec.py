"""An independent, analytic description of every zoo architecture, for the tests.

Nothing here looks at the model objects: each function walks the architecture as the papers
describe it (stage widths, strides, spatial sizes) and counts parameters and multiply-accumulates
by formula. The tests then compare the real models against these numbers layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerSpec:
    """One conv or linear layer: weight parameters, forward MACs per image, sparse by default."""

    name: str
    params: int
    macs: int
    sparse: bool


@dataclass
class ArchSpec:
    layers: list[LayerSpec] = field(default_factory=list)
    bn_channels: int = 0  # each BN channel holds an affine weight and bias
    biases: int = 0  # only the classifier has a bias

    def conv(self, name: str, cin: int, cout: int, k: int, out_hw: int, sparse: bool) -> None:
        params = cin * cout * k * k
        self.layers.append(LayerSpec(name, params, params * out_hw * out_hw, sparse))

    def linear(self, name: str, cin: int, cout: int) -> None:
        self.layers.append(LayerSpec(name, cin * cout, cin * cout, False))
        self.biases += cout

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers) + 2 * self.bn_channels + self.biases

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)


def cifar_resnet(depth: int, width: float, num_classes: int, size: int = 32) -> ArchSpec:
    """He et al. 2016 Sec. 4.2 with MEST's 1x1-conv shortcuts and dense stem/shortcut/fc."""
    n = (depth - 2) // 6
    widths = [round(16 * width), round(32 * width), round(64 * width)]
    return _stem_and_stages(widths, n, num_classes, size)


def cifar_resnet18(width: float, num_classes: int, size: int = 32) -> ArchSpec:
    """ResNet-18 with a 3x3 stem (mammoth / SparCL): widths 64..512 x width, 2 blocks per stage, same shortcuts."""
    return _stem_and_stages([round(m * 64 * width) for m in (1, 2, 4, 8)], 2, num_classes, size)


def _stem_and_stages(widths: list[int], n: int, num_classes: int, size: int) -> ArchSpec:
    spec = ArchSpec()
    spec.conv("stem.conv", 3, widths[0], 3, size, sparse=False)
    spec.bn_channels += widths[0]
    cin, hw = widths[0], size
    for s, cout in enumerate(widths, start=1):
        for b in range(n):
            stride = 2 if s > 1 and b == 0 else 1
            hw //= stride
            spec.conv(f"layer{s}.{b}.conv1", cin, cout, 3, hw, sparse=True)
            spec.conv(f"layer{s}.{b}.conv2", cout, cout, 3, hw, sparse=True)
            spec.bn_channels += 2 * cout
            if stride != 1 or cin != cout:
                spec.conv(f"layer{s}.{b}.shortcut.0", cin, cout, 1, hw, sparse=False)
                spec.bn_channels += cout
            cin = cout
    spec.linear("head.fc", cin, num_classes)
    return spec


VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]


def vgg(cfg: list, num_classes: int, size: int = 32) -> ArchSpec:
    """GraSP VGG: 3x3 conv+BN+ReLU per number, 2x2 max-pool per "M", AvgPool(2), one Linear."""
    spec = ArchSpec()
    cin, hw, stage, j = 3, size, 1, 0
    for v in cfg:
        if v == "M":
            hw //= 2
            stage, j = stage + 1, 0
            continue
        first = stage == 1 and j == 0
        spec.conv(f"stage{stage}.{j}.conv", cin, v, 3, hw, sparse=not first)
        spec.bn_channels += v
        cin, j = v, j + 1
    assert hw // 2 == 1, "AvgPool(2) must leave 1x1 so the classifier sees exactly cin features"
    spec.linear("head.fc", cin, num_classes)
    return spec


def imagenet_resnet(kind: str, num_classes: int, size: int = 224) -> ArchSpec:
    """He et al. 2016 Table 1 (torchvision v1.5: Bottleneck stride on the 3x3 conv)."""
    bottleneck, counts = {"resnet18": (False, [2, 2, 2, 2]), "resnet50": (True, [3, 4, 6, 3])}[kind]
    expansion = 4 if bottleneck else 1
    spec = ArchSpec()
    hw = size // 2  # 7x7 stride-2 stem conv
    spec.conv("stem.conv1", 3, 64, 7, hw, sparse=False)
    spec.bn_channels += 64
    hw //= 2  # 3x3 stride-2 max-pool
    cin = 64
    for s, (planes, count) in enumerate(zip([64, 128, 256, 512], counts, strict=True), start=1):
        for b in range(count):
            stride = 2 if s > 1 and b == 0 else 1
            hw //= stride
            cout = planes * expansion
            name = f"layer{s}.{b}"
            if bottleneck:
                spec.conv(f"{name}.conv1", cin, planes, 1, hw * stride, sparse=True)
                spec.conv(f"{name}.conv2", planes, planes, 3, hw, sparse=True)
                spec.conv(f"{name}.conv3", planes, cout, 1, hw, sparse=True)
                spec.bn_channels += 2 * planes + cout
            else:
                spec.conv(f"{name}.conv1", cin, planes, 3, hw, sparse=True)
                spec.conv(f"{name}.conv2", planes, planes, 3, hw, sparse=True)
                spec.bn_channels += 2 * planes
            if stride != 1 or cin != cout:
                spec.conv(f"{name}.downsample.0", cin, cout, 1, hw, sparse=True)
                spec.bn_channels += cout
            cin = cout
    spec.linear("head.fc", cin, num_classes)
    return spec


def spec_for(name: str, num_classes: int) -> ArchSpec:
    """The analytic spec of a zoo entry at its default width."""
    cifar = {"resnet20": (20, 1.0), "resnet32": (32, 1.0), "resnet56": (56, 1.0), "resnet32_w2": (32, 2.0)}
    if name in cifar:
        return cifar_resnet(*cifar[name], num_classes)
    if name == "vgg19":
        return vgg(VGG19_CFG, num_classes)
    if name == "resnet18_cifar":
        return cifar_resnet18(1.0, num_classes)
    return imagenet_resnet(name, num_classes)
