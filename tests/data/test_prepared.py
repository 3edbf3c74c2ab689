import json
import os

import numpy as np
import pytest

from spfde_core.data import PreparedDataError, load_prepared, prepare_dataset, verify_prepared

SMALL = {"num_train": 40, "num_test": 20, "num_classes": 4, "image_size": 8, "seed": 3}


def test_synthetic_roundtrip(tmp_path):
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    assert out == tmp_path / "synthetic"
    ds = load_prepared(out)
    assert ds.train_images.shape == (40, 8, 8, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (20, 8, 8, 3)
    assert ds.train_labels.dtype == np.int64 and set(ds.train_labels.tolist()) == {0, 1, 2, 3}
    meta = ds.meta
    assert meta["schema_version"] == 1 and meta["name"] == "synthetic" and meta["num_classes"] == 4
    assert meta["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    assert meta["source"]["kind"] == "synthetic"
    assert meta["splits"]["train"] == {"num_samples": 40, "shape": [40, 8, 8, 3]}
    assert meta["splits"]["test"] == {"num_samples": 20, "shape": [20, 8, 8, 3]}
    assert len(meta["content_sha256"]) == 64 and meta["spfde_version"]
    assert verify_prepared(out) == meta["content_sha256"]
    # Staging folders are gone once the write is done.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_hash_is_stable_and_tracks_content(tmp_path):
    a = load_prepared(prepare_dataset("synthetic", out_dir=tmp_path / "a", synthetic=SMALL))
    b = load_prepared(prepare_dataset("synthetic", out_dir=tmp_path / "b", synthetic=SMALL))
    c = load_prepared(prepare_dataset("synthetic", out_dir=tmp_path / "c", synthetic={**SMALL, "seed": 4}))
    assert a.content_sha256 == b.content_sha256
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert c.content_sha256 != a.content_sha256


def test_same_content_reprepare_is_a_noop(tmp_path):
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    inode = out.stat().st_ino
    assert prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert out.stat().st_ino == inode


def test_different_content_needs_force(tmp_path):
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    old_hash = load_prepared(out).content_sha256
    with pytest.raises(PreparedDataError, match=rf"{out}.*force=True"):
        prepare_dataset("synthetic", out_dir=tmp_path, synthetic={**SMALL, "seed": 9})
    assert load_prepared(out).content_sha256 == old_hash  # untouched
    prepare_dataset("synthetic", out_dir=tmp_path, synthetic={**SMALL, "seed": 9}, force=True)
    new = load_prepared(out)
    assert new.content_sha256 != old_hash and verify_prepared(out) == new.content_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_foreign_directory_is_not_overwritten(tmp_path):
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "notes.txt").write_text("mine")
    with pytest.raises(PreparedDataError, match="force=True"):
        prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    assert (tmp_path / "synthetic" / "notes.txt").read_text() == "mine"


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="spfde data prepare cifar10"):
        load_prepared(tmp_path / "cifar10")
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    meta = json.loads((out / "meta.json").read_text())
    meta["splits"]["test"]["shape"] = [21, 8, 8, 3]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PreparedDataError, match="test arrays have shapes"):
        load_prepared(out)
    os.remove(out / "train_labels.npy")
    with pytest.raises(PreparedDataError, match="train_labels.npy is missing"):
        load_prepared(out)


def test_verify_detects_changed_pixels(tmp_path):
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    images = np.load(out / "train_images.npy")
    images[0, 0, 0, 0] ^= 1
    np.save(out / "train_images.npy", images)
    with pytest.raises(PreparedDataError, match="does not match"):
        verify_prepared(out)


def test_argument_validation_lists_valid_values(tmp_path):
    with pytest.raises(ValueError, match="valid datasets: cifar10, cifar100, imagenet, synthetic"):
        prepare_dataset("mnist", out_dir=tmp_path)
    with pytest.raises(ValueError, match="valid sources: auto, imagefolder, torchvision, hf, synthetic"):
        prepare_dataset("cifar10", source="web", out_dir=tmp_path)
    with pytest.raises(ValueError, match="valid: num_train"):
        prepare_dataset("synthetic", out_dir=tmp_path, synthetic={"size": 3})
    with pytest.raises(ValueError, match="only with the dataset 'synthetic'"):
        prepare_dataset("cifar10", source="synthetic", out_dir=tmp_path)
