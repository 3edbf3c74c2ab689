import json

import pytest
import torch
from data_test_helpers import class_colour

from spfde_core.data import (
    Batch,
    DataSourceError,
    ImageFolderStreamLoader,
    PreparedDataError,
    load_index,
    prepare_dataset,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = {"train": ["c", "a", "b"], "val": ["a", "b", "c"]}


@pytest.fixture
def index_dir(jpeg_tree, tmp_path):
    root = jpeg_tree(CLASSES, per_class=4, size=64, top="imagenet-mini")
    return prepare_dataset("imagenet", path=str(root), out_dir=tmp_path / "prepared")


def make(index_dir, split="train", train=True, **kw):
    # mean/std default to the catalog's ImageNet constants (MEAN, STD).
    kw = {"batch_size": 5, "train": train, "image_size": 16, "num_workers": 0, **kw}
    return ImageFolderStreamLoader(index_dir, split, **kw)


def one_pass(loader):
    return [Batch(*(t.clone() for t in b)) for b in loader]


def test_index_contents(index_dir, tmp_path):
    index = load_index(index_dir)
    assert index.class_names == ["a", "b", "c"] and index.num_classes == 3
    assert index.root == (tmp_path / "tree" / "imagenet-mini").resolve()
    assert index.samples["train"][:2] == [("train/a/0000.jpg", 0), ("train/a/0001.jpg", 0)]
    assert index.samples["test"][-1] == ("val/c/0003.jpg", 2)
    assert [label for _, label in index.samples["train"]] == [0] * 4 + [1] * 4 + [2] * 4
    meta = json.loads((index_dir / "index.json").read_text())
    assert meta["split_dirs"] == {"train": "train", "test": "val"} and "not hashed" in meta["hash_covers"]
    assert meta["source"] == {"kind": "imagefolder", "path": str(index.root)}
    assert len(index.content_sha256) == 64


def test_index_is_idempotent_and_guards_changes(index_dir):
    index = load_index(index_dir)
    mtime = (index_dir / "index.json").stat().st_mtime_ns
    assert prepare_dataset("imagenet", path=str(index.root.parent), out_dir=index_dir.parent) == index_dir
    assert (index_dir / "index.json").stat().st_mtime_ns == mtime
    (index.root / "train" / "a" / "0000.jpg").write_bytes(b"x" * 10)  # different size -> different hash
    with pytest.raises(PreparedDataError, match=rf"{index_dir}.*force=True"):
        prepare_dataset("imagenet", path=str(index.root.parent), out_dir=index_dir.parent)
    prepare_dataset("imagenet", path=str(index.root.parent), out_dir=index_dir.parent, force=True)
    assert load_index(index_dir).content_sha256 != index.content_sha256


def test_imagenet_needs_a_path(tmp_path, monkeypatch):
    monkeypatch.delenv("SPFDE_DATA_DIR", raising=False)
    with pytest.raises(DataSourceError, match="imagenet cannot be downloaded; pass path="):
        prepare_dataset("imagenet", out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="spfde data prepare imagenet"):
        load_index(tmp_path / "imagenet")


def test_train_pass_is_deterministic_and_covers_every_index(index_dir):
    loader = make(index_dir)
    loader.set_epoch(2)
    first = one_pass(loader)
    assert len(first) == len(loader) == 3 and loader.num_samples == 12
    assert first[0].images.shape == (5, 3, 16, 16) and first[0].images.dtype == torch.float32
    indices = torch.cat([b.indices for b in first])
    assert sorted(indices.tolist()) == list(range(12))
    assert torch.equal(torch.cat([b.labels for b in first]), indices // 4)
    # Two worker processes produce exactly the same batches: augmentation is keyed by sample.
    workers = make(index_dir, num_workers=2)
    workers.set_epoch(2)
    for a, b in zip(first, one_pass(workers), strict=True):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    loader.set_epoch(3)
    other = one_pass(loader)
    assert not torch.equal(indices, torch.cat([b.indices for b in other]))


def test_set_active_and_eval_mode(index_dir):
    loader = make(index_dir, split="val", train=False, batch_size=4, drop_last=True)
    loader.set_active(torch.tensor([11, 0, 5, 6, 2]))
    assert loader.num_samples == 5 and len(loader) == 1
    first = one_pass(loader)
    loader.set_epoch(7)
    second = one_pass(loader)
    assert first[0].indices.tolist() == [0, 2, 5, 6]
    assert torch.equal(first[0].images, second[0].images)
    # Solid-colour images survive resize + centre crop: each pixel is its class colour, normalised.
    for image, label in zip(first[0].images, first[0].labels, strict=True):
        pixel = image[:, 8, 8] * torch.tensor(STD) + torch.tensor(MEAN)
        expected = torch.tensor(class_colour(int(label)), dtype=torch.float32) / 255
        assert torch.allclose(pixel, expected, atol=8 / 255)


def test_channels_last(index_dir):
    batch = next(iter(make(index_dir, channels_last=True)))
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
