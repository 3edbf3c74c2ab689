"""Sources of raw data; each returns decoded splits as a ``SourceData``."""

from .base import SourceData
from .huggingface import load_huggingface
from .imagefolder import load_imagefolder
from .resolve import SOURCES, ResolvedSource, resolve_source
from .synthetic import make_synthetic
from .torchvision_cifar import load_torchvision_cifar

__all__ = [
    "SOURCES",
    "ResolvedSource",
    "SourceData",
    "load_huggingface",
    "load_imagefolder",
    "load_torchvision_cifar",
    "make_synthetic",
    "resolve_source",
]
