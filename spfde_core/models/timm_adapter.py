"""timm models as ``BlockModel``s: ``model.name=timm-<timm name>`` (e.g. ``timm-resnet10t``, ``timm-test_convnext``).

timm (``pip install -e '.[timm]'``) is optional: this module imports it only when a ``timm-`` model is built.
The timm model is created with ``pretrained=False`` (training never downloads) and its modules are moved,
not copied, into ordered blocks, so freezing (``model.blocks``, front to back) and sparsity
(``prunable_layers()``: every conv and linear) work on it like on the zoo's own models:

- **ResNet family** (``conv1`` .. ``maxpool``, ``layer1``..``layer4``: resnet*, resnet*t/d, seresnet, ...):
  ``stem``, one block per residual block ``layerS.B``, ``head``; the same cut as the zoo's torchvision
  ResNets (models/imagenet_resnet.py).
- **Stem + stages** (``stem`` and ``stages``: ConvNeXt, ByobNet/RegNet-style, ...): ``stem``, one block per
  stage ``stages.S``, ``head`` (whatever ``forward_features`` runs after the stages, then ``forward_head``).

Other timm families (ViTs, EfficientNets: their forward is not a sequence of child modules) are refused with a
message naming the two supported layouts. Each split is checked once when built: on one input (fixed
generator, eval mode) it must give timm's own forward to 1e-4, or the build fails.

Sparse by default (the MEST/SpFDE convention of the zoo's ResNets): every conv and linear except the stem's
first conv and the head (classifier).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from spfde_core.models.base import BlockModel

PREFIX = "timm-"
RESNET_STEM = ("conv1", "bn1", "act1", "maxpool")


class _Head(nn.Module):
    """The modules after the last block, run in order, then the timm model's own ``forward_head``.

    The timm model itself is kept out of the module tree (a plain attribute in a tuple), so its parameters
    are registered once, under their block.
    """

    def __init__(self, net: nn.Module, before: list[str]) -> None:
        super().__init__()
        self._net = (net,)
        self.before = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in before))
        used = {"stem", "stages", *RESNET_STEM, *(f"layer{s}" for s in range(1, 5)), *before}
        self.rest = nn.ModuleDict({n: m for n, m in net.named_children() if n not in used})  # pool, fc / head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net[0].forward_head(self.before(x))

    def train(self, mode: bool = True) -> _Head:
        super().train(mode)
        self._net[0].training = mode  # forward_head reads the timm model's own flag (head dropout)
        return self


def _split(net: nn.Module) -> list[tuple[str, nn.Module]]:
    children = [name for name, _ in net.named_children()]
    if all(hasattr(net, n) for n in (*RESNET_STEM, "layer1", "layer4", "forward_head")):
        blocks: list[tuple[str, nn.Module]] = [
            ("stem", nn.Sequential(OrderedDict((n, getattr(net, n)) for n in RESNET_STEM)))
        ]
        for stage in range(1, 5):
            blocks += [(f"layer{stage}.{i}", block) for i, block in enumerate(getattr(net, f"layer{stage}"))]
        return [*blocks, ("head", _Head(net, []))]
    if isinstance(getattr(net, "stem", None), nn.Module) and isinstance(getattr(net, "stages", None), nn.Sequential):
        # What forward_features runs after the stages (ConvNeXt's norm_pre, ByobNet's final_conv), in order.
        after = children[children.index("stages") + 1 :]
        before_head = [n for n in after if n not in ("head", "fc", "global_pool", "classifier", "head_drop")]
        blocks = [("stem", net.stem)] + [(f"stages.{i}", stage) for i, stage in enumerate(net.stages)]
        return [*blocks, ("head", _Head(net, before_head))]
    raise ValueError(
        f"timm model {type(net).__name__} has neither the ResNet layout (conv1, bn1, act1, maxpool, layer1..4) nor "
        f"a stem + stages layout (children: {', '.join(children)}); the timm adapter supports those two"
    )


class TimmBlockModel(BlockModel):
    """A timm model cut into ordered freezable blocks (stem, residual blocks or stages, head).

    Args:
        name: the timm model name (``timm.list_models()``), without the ``timm-`` prefix.
        num_classes: classifier outputs.
    """

    def __init__(self, name: str, num_classes: int) -> None:
        import timm

        net = timm.create_model(name, pretrained=False, num_classes=num_classes)
        blocks = _split(net)
        super().__init__(blocks)
        self.timm_name = name
        self._check_split(net)

    @torch.no_grad()
    def _check_split(self, net: nn.Module) -> None:
        """The blocks in order must compute timm's forward (eval mode; fixed generator: global RNG untouched)."""
        if any(p.is_meta for p in self.parameters()):  # built on the meta device (the cost meter's trace)
            return
        was_training = self.training
        self.eval()
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), device="cpu")
        ours, theirs = self(x), net(x)
        self.train(was_training)
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
            raise ValueError(f"timm model {self.timm_name}: the block split does not reproduce timm's forward")

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        first_conv = next(n for n, m in self.blocks[0].named_modules() if isinstance(m, nn.Conv2d))
        return not (name.startswith("head") or name == f"stem.{first_conv}")


def check_name(name: str) -> None:
    """Raise KeyError (the message says why) unless timm is installed and knows ``name``."""
    try:
        import timm
    except ImportError:
        raise KeyError(f"model '{PREFIX}{name}' needs timm: pip install -e '.[timm]'") from None
    if not timm.is_model(name):
        raise KeyError(f"timm has no model '{name}' (timm.list_models() lists them)")


def build(name: str, num_classes: int) -> TimmBlockModel:
    """``timm-<name>``'s builder (models/__init__.py ``lookup_model``)."""
    return TimmBlockModel(name, num_classes)
