"""Prepare the shared CIFAR-10 JPEG archive end to end (~10-30 s: decodes 60,000 JPEGs)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spfde_core.data import TensorLoader, load_prepared, prepare_dataset

ARCHIVE = "cifar10-jpeg.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _shared_archive() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2].parent / "shared" / "data" / ARCHIVE]
    if os.environ.get("SPFDE_DATA_DIR"):
        candidates.insert(0, Path(os.environ["SPFDE_DATA_DIR"]) / ARCHIVE)
    return next((p for p in candidates if p.is_file()), None)


def test_prepare_shared_cifar10(tmp_path, monkeypatch):
    archive = _shared_archive()
    if archive is None:
        if os.environ.get("SPFDE_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{ARCHIVE} not found (SPFDE_REQUIRE_SHARED_DATA=1); set SPFDE_DATA_DIR")
        pytest.skip(f"{ARCHIVE} not found; set SPFDE_DATA_DIR to the folder holding it")
    # Exercise source=auto: SPFDE_DATA_DIR holding cifar10-jpeg.tar.gz is the ImageFolder source.
    monkeypatch.setenv("SPFDE_DATA_DIR", str(archive.parent))
    ds = load_prepared(prepare_dataset("cifar10", out_dir=tmp_path))
    assert ds.meta["source"] == {"kind": "imagefolder", "path": str(archive.resolve())}
    assert ds.train_images.shape == (50_000, 32, 32, 3) and ds.test_images.shape == (10_000, 32, 32, 3)
    assert ds.class_names == CLASSES
    assert np.bincount(ds.train_labels).tolist() == [5_000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1_000] * 10
    # Real photos, not blank decodes: pixel statistics near CIFAR-10's.
    mean = ds.train_images.reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, (0.4914, 0.4822, 0.4465), atol=0.02)

    loader = TensorLoader.from_prepared(ds, "train", batch_size=256, seed=0)
    batch = next(iter(loader))
    assert batch.images.shape == (256, 3, 32, 32) and batch.images.dtype == torch.float32
    assert torch.equal(batch.labels, torch.from_numpy(ds.train_labels)[batch.indices])
    assert abs(float(batch.images.mean())) < 0.5  # normalised

    # And the trainer trains a few batches on it (the same prepared folder, through the CLI).
    from spfde_core.cli import main
    from spfde_core.records import read_record

    args = [
        "train",
        "data=cifar10",
        "model=resnet20",
        "model.width=0.25",
        "train.epochs=1",
        "train.max_batches_per_epoch=5",
        f"data.prepared_dir={tmp_path}",
        f"run.results_dir={tmp_path / 'runs'}",
        f"run.checkpoint_dir={tmp_path / 'ckpt'}",
        "run.row=real",
        "train.progress=false",
    ]
    assert main(args) == 0
    record = read_record(tmp_path / "runs" / "adhoc" / "real" / "seed0")
    assert record["data"]["content_sha256"] == ds.content_sha256 and record["data"]["num_train"] == 50_000
    assert 0.0 <= record["results"]["final_top1"] <= 1.0 and record["results"]["epochs"] == 1
