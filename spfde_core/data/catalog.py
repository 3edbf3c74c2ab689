"""Static facts about the datasets the benchmark knows: class count, image size, normalisation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a loader needs to know about a dataset before reading any file.

    Attributes:
        name: catalog key, also the name of the prepared directory.
        num_classes: number of classes (for ``synthetic`` only the default; the prepared
            ``meta.json`` holds the actual count).
        image_size: side of the square images fed to the model (stored size for in-memory sets,
            crop size for streamed ones).
        mean: per-channel mean of the [0, 1] pixels, used to normalise.
        std: per-channel standard deviation used to normalise.
        in_memory: True when the prepared form is uint8 arrays loaded whole; False when images are
            streamed from files through an index (ImageNet).
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_memory: bool


DATASETS: dict[str, DatasetInfo] = {
    # Constants as in the MEST code base (they are not the exact CIFAR-10 std, but reproductions
    # must normalise the way the source papers did).
    "cifar10": DatasetInfo(
        name="cifar10",
        num_classes=10,
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        in_memory=True,
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        num_classes=100,
        image_size=32,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        in_memory=True,
    ),
    "imagenet": DatasetInfo(
        name="imagenet",
        num_classes=1000,
        image_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        in_memory=False,
    ),
    # Tiny-ImageNet (200 classes, 64x64), the third dataset of the continual-learning splits (Split
    # Tiny-ImageNet = 10 tasks x 20 classes, docs/continual.md); constants of mammoth's seq-tinyimg, which
    # SparCL's continual code derives from. Prepared from an ImageFolder tree (train/ and val/ in class folders).
    "tiny_imagenet": DatasetInfo(
        name="tiny_imagenet",
        num_classes=200,
        image_size=64,
        mean=(0.4802, 0.4480, 0.3975),
        std=(0.2770, 0.2691, 0.2821),
        in_memory=True,
    ),
    # CIFAR-shaped generated data for smoke tests; its pixels are centred on mid-grey with a spread
    # of roughly a quarter of the range (see sources/synthetic.py).
    "synthetic": DatasetInfo(
        name="synthetic",
        num_classes=10,
        image_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        in_memory=True,
    ),
}

DATASET_NAMES: tuple[str, ...] = tuple(sorted(DATASETS))


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset (e.g. from an ``spfde.datasets`` plugin, spfde_core/plugins.py): ``data=<name>`` selects it.

    It is prepared like the built-in ones from an ImageFolder tree or a Hugging Face dataset
    (``spfde data prepare <name> data.source=imagefolder data.path=...``), checked against ``info``.
    """
    global DATASET_NAMES
    from hydra.core.config_store import ConfigStore

    if info.name in DATASETS and DATASETS[info.name] != info:
        raise ValueError(f"dataset {info.name!r} is already registered with other facts")
    DATASETS[info.name] = info
    DATASET_NAMES = tuple(sorted(DATASETS))
    ConfigStore.instance().store(group="data", name=info.name, node={"name": info.name})
    return info


def get_dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up in the catalog.

    Args:
        name: one of ``DATASET_NAMES`` (``cifar10``, ``cifar100``, ``imagenet``, ``synthetic``).

    Returns:
        The dataset's ``DatasetInfo``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    return DATASETS[name]
