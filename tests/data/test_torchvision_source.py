import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest
import torchvision.datasets.cifar

from spfde_core.data import DataSourceError, load_prepared, prepare_dataset
from spfde_core.data.sources.torchvision_cifar import load_torchvision_cifar


def test_no_network_error_lists_local_sources(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("SPFDE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # source=auto downloads into ./data/raw
    with pytest.raises(DataSourceError) as err:
        prepare_dataset("cifar10", out_dir=tmp_path / "out")
    message = str(err.value)
    assert "no network was reachable" in message
    assert (
        "data.source=imagefolder data.path=" in message and "data.source=hf" in message and "SPFDE_DATA_DIR" in message
    )
    assert not (tmp_path / "out" / "cifar10").exists()


def _fake_cifar100(root, n_train=6, n_test=4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        coarse = [v // 5 for v in fine]
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": coarse}, f)
        splits[split] = (data, fine)
    names = [f"fine_{i:02d}" for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
    return splits, names


def test_fake_cifar100_pickles(tmp_path, monkeypatch):
    splits, names = _fake_cifar100(tmp_path / "raw")
    # The fake files cannot match the real md5 sums; torchvision must accept them and not download.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    data = load_torchvision_cifar("cifar100", tmp_path / "raw")
    assert data.class_names == names
    assert data.train_labels.tolist() == splits["train"][1] and data.test_labels.tolist() == splits["test"][1]
    # torchvision stores (N, 3*32*32) channel-major rows; the source must hand out (N, 32, 32, 3).
    expected = splits["train"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(data.train_images, expected)

    out = prepare_dataset("cifar100", source="torchvision", path=str(tmp_path / "raw"), out_dir=tmp_path / "out")
    ds = load_prepared(out)
    assert ds.meta["source"]["kind"] == "torchvision" and ds.num_classes == 100
    assert ds.train_images.shape == (6, 32, 32, 3) and ds.test_images.shape == (4, 32, 32, 3)


def test_torchvision_only_serves_cifar(tmp_path):
    with pytest.raises(DataSourceError, match="provides cifar10 and cifar100"):
        prepare_dataset("imagenet", source="torchvision", out_dir=tmp_path)
