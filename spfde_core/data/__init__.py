"""Data: preparing datasets on disk (``prepare_dataset``) and feeding them to the trainer (loaders).

Typical use::

    path = prepare_dataset("cifar10")                      # once; idempotent
    ds = load_prepared(path)
    train = TensorLoader.from_prepared(ds, "train", batch_size=128, seed=0)
"""

from .catalog import DATASET_NAMES, DatasetInfo, get_dataset_info
from .errors import DataSourceError, PreparedDataError
from .imagenet_index import ImageFolderIndex, build_imagefolder_index, load_index
from .loader import TensorLoader
from .prepare import prepare_dataset
from .prepared import PreparedDataset, load_prepared, verify_prepared
from .sources import SOURCES
from .stream_loader import ImageFolderStreamLoader
from .types import Batch, Loader

__all__ = [
    "DATASET_NAMES",
    "SOURCES",
    "Batch",
    "DataSourceError",
    "DatasetInfo",
    "ImageFolderIndex",
    "ImageFolderStreamLoader",
    "Loader",
    "PreparedDataError",
    "PreparedDataset",
    "TensorLoader",
    "build_imagefolder_index",
    "get_dataset_info",
    "load_index",
    "load_prepared",
    "prepare_dataset",
    "verify_prepared",
]
