import tarfile

import numpy as np
import pytest
from data_test_helpers import class_colour, make_tarball

from spfde_core.data import DataSourceError, load_prepared, prepare_dataset
from spfde_core.data.sources.imagefolder import load_imagefolder


def _check_labels_follow_sorted_classes(data):
    assert data.class_names == ["ant", "bee", "cat"]
    for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        # Each decoded image carries its class's colour (away from the noisy corner pixel).
        for image, label in zip(images, labels, strict=True):
            assert np.abs(image[2:, 2:].reshape(-1, 3).mean(0) - class_colour(label)).max() < 6


def test_directory_source(jpeg_tree):
    root = jpeg_tree()
    data = load_imagefolder(root, image_size=8)
    assert data.train_images.shape == (9, 8, 8, 3) and data.test_images.shape == (9, 8, 8, 3)
    assert data.kind == "imagefolder"
    _check_labels_follow_sorted_classes(data)


def test_tarball_with_top_folder_matches_directory(jpeg_tree, tmp_path):
    root = jpeg_tree(top="cifar-ish")
    archive = make_tarball(root, tmp_path / "tiny.tar.gz")
    from_tar = load_imagefolder(archive, image_size=8)
    from_dir = load_imagefolder(root / "cifar-ish", image_size=8)
    _check_labels_follow_sorted_classes(from_tar)
    np.testing.assert_array_equal(from_tar.train_images, from_dir.train_images)
    np.testing.assert_array_equal(from_tar.test_images, from_dir.test_images)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_hash_does_not_depend_on_listing_order(jpeg_tree, tmp_path, monkeypatch):
    root = jpeg_tree({"train": CIFAR10_CLASSES, "test": CIFAR10_CLASSES}, per_class=2, size=32)
    files = sorted(root.rglob("*.jpg"))
    for name, order in (("fwd", files), ("rev", files[::-1])):
        with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
            for path in order:
                tar.add(path, arcname=str(path.relative_to(root)))
    hashes = set()
    for name in ("fwd", "rev"):
        out = prepare_dataset("cifar10", path=str(tmp_path / f"{name}.tar.gz"), out_dir=tmp_path / name)
        hashes.add(load_prepared(out).content_sha256)
    # source=auto with SPFDE_DATA_DIR holding <name>/ reads the directory itself.
    (tmp_path / "env").mkdir()
    root.rename(tmp_path / "env" / "cifar10")
    monkeypatch.setenv("SPFDE_DATA_DIR", str(tmp_path / "env"))
    out = prepare_dataset("cifar10", out_dir=tmp_path / "dir")
    ds = load_prepared(out)
    assert ds.meta["source"] == {"kind": "imagefolder", "path": str(tmp_path / "env" / "cifar10")}
    assert ds.class_names == CIFAR10_CLASSES and ds.train_labels.tolist() == [i // 2 for i in range(20)]
    hashes.add(ds.content_sha256)
    assert len(hashes) == 1


def test_val_folder_stands_in_for_test(jpeg_tree):
    root = jpeg_tree({"train": ["a", "b"], "val": ["a", "b"]}, per_class=1)
    data = load_imagefolder(root)
    assert data.class_names == ["a", "b"] and data.test_labels.tolist() == [0, 1]


def test_missing_path(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        load_imagefolder(tmp_path / "nowhere.tar.gz")


def test_wrong_layout_names_found_and_expected(jpeg_tree):
    root = jpeg_tree({"training": ["a"], "testing": ["a"]}, per_class=1)
    with pytest.raises(DataSourceError) as err:
        load_imagefolder(root)
    message = str(err.value)
    assert "expected train/<class>/<image> and test/<class>/<image>" in message
    assert "testing" in message and "training" in message


def test_missing_test_split(jpeg_tree):
    root = jpeg_tree({"train": ["a"]}, per_class=1)
    with pytest.raises(DataSourceError, match=r"no test/ or val/ folder.*\[train\]"):
        load_imagefolder(root)


def test_class_mismatch_lists_differences(jpeg_tree):
    root = jpeg_tree({"train": ["a", "b", "c"], "test": ["a", "b", "d"]}, per_class=1)
    with pytest.raises(DataSourceError, match=r"only in train: \['c'\]; only in test: \['d'\]"):
        load_imagefolder(root)


def test_corrupt_image_is_named(jpeg_tree, tmp_path):
    root = jpeg_tree(per_class=1)
    (root / "test" / "bee" / "0000.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DataSourceError, match=r"cannot decode image 'test/bee/0000.jpg'"):
        load_imagefolder(root)
    archive = make_tarball(root, tmp_path / "bad.tar.gz")
    with pytest.raises(DataSourceError, match=r"bad.tar.gz: cannot decode image 'test/bee/0000.jpg'"):
        load_imagefolder(archive)


def test_wrong_size_image_is_named(jpeg_tree):
    root = jpeg_tree(per_class=1, size=12)
    with pytest.raises(DataSourceError, match=r"image 'train/ant/0000.jpg' is 12x12, expected 8x8"):
        load_imagefolder(root, image_size=8)


def test_prepare_rejects_wrong_class_count(jpeg_tree, tmp_path):
    root = jpeg_tree(size=32)
    with pytest.raises(DataSourceError, match="found 3 classes, but cifar10 has 10"):
        prepare_dataset("cifar10", source="imagefolder", path=str(root), out_dir=tmp_path / "out")


def test_hidden_entries_are_skipped_and_wrapped_wrong_layout_is_explained(jpeg_tree, tmp_path):
    root = jpeg_tree({"train": ["a", "b"], "test": ["a", "b"]}, per_class=1)
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "a" / "._0000.jpg").write_bytes(b"resource fork")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x.jpg").write_bytes(b"junk")
    assert load_imagefolder(root).train_labels.tolist() == [0, 1]

    wrapped = jpeg_tree({"Train": ["a"], "Test": ["a"]}, per_class=1, top="cifar", name="wrapped")
    with pytest.raises(DataSourceError, match=r"found top-level entries cifar/ containing \[Test, Train\]"):
        load_imagefolder(make_tarball(wrapped, tmp_path / "wrapped.tar.gz"))
