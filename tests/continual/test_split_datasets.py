"""Split CIFAR-100 / Split Tiny-ImageNet from prepared data the test builds (ImageFolder trees of JPEGs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from spfde_core.continual.splits import STANDARD_TASKS, make_split
from spfde_core.data import load_prepared, prepare_dataset
from spfde_core.data.loader import TensorLoader

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from data_test_helpers import write_tree  # noqa: E402


@pytest.mark.parametrize(("name", "classes", "size"), [("cifar100", 100, 32), ("tiny_imagenet", 200, 64)])
def test_prepared_dataset_splits_into_its_standard_tasks(tmp_path, name: str, classes: int, size: int) -> None:
    labels = [f"c{k:03d}" for k in range(classes)]
    tree = write_tree(tmp_path / "tree", {"train": labels, "val": labels}, per_class=2, size=size)
    prepared = load_prepared(prepare_dataset(name, source="imagefolder", path=str(tree), out_dir=tmp_path / "prep"))
    assert prepared.num_classes == classes
    train = TensorLoader.from_prepared(prepared, "train", batch_size=16)
    split = make_split(train.num_classes, STANDARD_TASKS[name])
    assert (split.num_tasks, split.classes_per_task) == {"cifar100": (10, 10), "tiny_imagenet": (10, 20)}[name]
    for task in (0, split.num_tasks - 1):
        train.set_active(split.indices(train.labels, task))
        batches = list(train)
        seen = torch.cat([b.labels for b in batches])
        assert sorted(set(seen.tolist())) == list(split.classes(task)) and len(seen) == 2 * split.classes_per_task
        assert batches[0].images.shape[1:] == (3, size, size)
