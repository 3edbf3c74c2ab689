"""The model zoo: every model is a ``BlockModel`` (ordered freezable blocks + prunable layers).

``build_model(name, num_classes, width=None)`` is the one entry point; ``MODELS`` maps names to
``ModelEntry`` records (builder, default width, input resolution). Other packages add models through the
``spfde.models`` entry-point group (spfde_core/plugins.py) with ``register_model``; ``timm-<name>`` builds
any timm model of a supported layout (models/timm_adapter.py, optional extra ``timm``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from spfde_core.models import cifar_resnet, cifar_resnet18, imagenet_resnet, vgg
from spfde_core.models.base import BlockModel, PrunableLayer
from spfde_core.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """How to build one named model.

    Attributes:
        builder: ``builder(num_classes)`` or, when ``default_width`` is set, ``builder(num_classes, width)``.
        default_width: width multiplier used when none is given; None = no width multiplier.
        input_size: the square input resolution the model is meant for (32 CIFAR, 224 ImageNet).
        source: where the architecture comes from.
    """

    builder: Callable[..., BlockModel]
    default_width: float | None
    input_size: int
    source: str


MODELS: Registry[ModelEntry] = Registry("model")

_HE = "He et al. 2016, Deep Residual Learning"
_MEST = "MEST/GraSP CIFAR variant (MEST repo, reference notes Sec. 1.1)"
for _name, _entry in {
    "resnet20": ModelEntry(cifar_resnet.resnet20, 1.0, 32, f"{_HE}, Sec. 4.2; {_MEST}"),
    "resnet32": ModelEntry(cifar_resnet.resnet32, 1.0, 32, f"{_HE}, Sec. 4.2; {_MEST}"),
    "resnet56": ModelEntry(cifar_resnet.resnet56, 1.0, 32, f"{_HE}, Sec. 4.2; {_MEST}"),
    "resnet32_w2": ModelEntry(cifar_resnet.resnet32, 2.0, 32, f"2x-wide ResNet-32 of {_MEST}; SpFDE"),
    "vgg19": ModelEntry(vgg.vgg19, None, 32, "GraSP VGG-19 with BN (MEST models/vgg_grasp.py)"),
    "resnet18_cifar": ModelEntry(
        cifar_resnet18.resnet18_cifar, 1.0, 32, f"{_HE}; CIFAR stem as mammoth / SparCL models/resnet18_cifar.py"
    ),
    "resnet18": ModelEntry(imagenet_resnet.resnet18, None, 224, f"torchvision resnet18; {_HE}"),
    "resnet50": ModelEntry(imagenet_resnet.resnet50, None, 224, f"torchvision resnet50; {_HE}"),
}.items():
    MODELS.register(_name)(_entry)


def register_model(name: str, entry: ModelEntry) -> ModelEntry:
    """Add a model (e.g. from a plugin), selectable as ``model.name=<name>`` and as the option ``model=<name>``."""
    from hydra.core.config_store import ConfigStore

    MODELS.register(name)(entry)
    ConfigStore.instance().store(group="model", name=name, node={"name": name})
    return entry


def lookup_model(name: str) -> ModelEntry:
    """The entry of ``name``; a ``timm-<timm name>`` is registered on first use (timm itself is imported later)."""
    from spfde_core.models import timm_adapter

    if name not in MODELS and name.startswith(timm_adapter.PREFIX) and len(name) > len(timm_adapter.PREFIX):
        timm_name = name[len(timm_adapter.PREFIX) :]
        timm_adapter.check_name(timm_name)
        builder = functools.partial(timm_adapter.build, timm_name)
        MODELS.register(name)(ModelEntry(builder, None, 32, f"timm {timm_name} (pretrained=False), timm adapter"))
    return MODELS.get(name)


def build_model(name: str, num_classes: int, width: float | None = None) -> BlockModel:
    """Build a freshly initialised model from the zoo.

    Args:
        name: a registered name (see ``model_names()``).
        num_classes: classifier outputs.
        width: width multiplier (CIFAR ResNets only); None = the entry's default (2 for
            ``resnet32_w2``, 1 for the other CIFAR ResNets).

    Returns:
        The model, in train mode, on CPU, in float32.

    Raises:
        KeyError: unknown name (the message lists the known models).
        ValueError: ``width`` given for a model without a width multiplier.
    """
    entry = lookup_model(name)
    if entry.default_width is None:
        if width is not None:
            raise ValueError(f"model '{name}' has no width multiplier (got width={width})")
        return entry.builder(num_classes)
    return entry.builder(num_classes, entry.default_width if width is None else width)


def model_names() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()


__all__ = [
    "MODELS",
    "BlockModel",
    "ModelEntry",
    "PrunableLayer",
    "build_model",
    "lookup_model",
    "model_names",
    "register_model",
]
