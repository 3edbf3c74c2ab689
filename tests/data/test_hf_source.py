import numpy as np
import pytest
from PIL import Image

from spfde_core.data import DataSourceError, load_prepared, prepare_dataset
from spfde_core.data.sources.huggingface import load_huggingface

datasets = pytest.importorskip("datasets")

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _save_tiny(path, image_col="img", label_col="label"):
    rng = np.random.default_rng(0)
    features = datasets.Features({image_col: datasets.Image(), label_col: datasets.ClassLabel(names=NAMES)})
    splits, arrays = {}, {}
    for split, n in (("train", 6), ("test", 3)):
        pixels = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, len(NAMES), size=n)]
        rows = {image_col: [Image.fromarray(p) for p in pixels], label_col: labels}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
        arrays[split] = (pixels, labels)
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return arrays


@pytest.mark.parametrize(("image_col", "label_col"), [("img", "label"), ("image", "fine_label")])
def test_saved_dataset_is_read_exactly(tmp_path, image_col, label_col):
    arrays = _save_tiny(tmp_path / "hf", image_col, label_col)
    data = load_huggingface(str(tmp_path / "hf"))
    assert data.class_names == NAMES and data.kind == "hf"
    for split in ("train", "test"):
        pixels, labels = arrays[split]
        np.testing.assert_array_equal(getattr(data, f"{split}_images"), pixels)  # PNG storage is lossless
        assert getattr(data, f"{split}_labels").tolist() == labels


def test_prepare_auto_detects_saved_dataset(tmp_path):
    arrays = _save_tiny(tmp_path / "hf")
    ds = load_prepared(prepare_dataset("cifar10", path=str(tmp_path / "hf"), out_dir=tmp_path / "out"))
    assert ds.meta["source"]["kind"] == "hf" and ds.class_names == NAMES
    np.testing.assert_array_equal(ds.test_images, arrays["test"][0])


def test_missing_columns_are_reported(tmp_path):
    _save_tiny(tmp_path / "hf", image_col="picture")
    with pytest.raises(DataSourceError, match=r"no image column; expected one of \['img', 'image'\]"):
        load_huggingface(str(tmp_path / "hf"))


def test_missing_package_suggests_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataSourceError, match=r"pip install 'spfde-bench\[hf\]'"):
        load_huggingface("uoft-cs/cifar10")
