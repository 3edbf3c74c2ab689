"""A prepared dataset changed after preparation is refused at load, naming the file and the command to fix it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from spfde_core.cli import main
from spfde_core.data import PreparedDataError, load_prepared, prepare_dataset

SMALL = {"num_train": 40, "num_test": 20, "num_classes": 4, "image_size": 8, "seed": 3}


def _touch_later(path) -> None:
    time.sleep(0.01)  # a later mtime than meta.json's even on coarse clocks
    path.touch()


@pytest.mark.parametrize("file", ["train_images.npy", "test_labels.npy"])
def test_changed_array_is_refused_naming_the_file_and_the_fix(tmp_path, file) -> None:
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    array = np.load(out / file)
    array.flat[0] = (array.flat[0] + 1) % 4  # same shape and dtype: only the content hash can tell
    np.save(out / file, array)
    _touch_later(out / file)
    with pytest.raises(PreparedDataError) as err:
        load_prepared(out)
    message = str(err.value)
    assert message.startswith(f"{out / file}: changed after preparation")
    assert "does not match" in message and "meta.json" in message
    assert f"`rm -r {out}`" in message  # synthetic data: the next run generates it again
    load_prepared(out, verify=False)  # the unchecked load still works (for tools that inspect a folder)


def test_changed_class_names_are_refused(tmp_path) -> None:
    out = prepare_dataset("synthetic", out_dir=tmp_path, synthetic=SMALL)
    meta = json.loads((out / "meta.json").read_text())
    meta["class_names"][0] = "cat"
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(PreparedDataError, match=r"meta.json.*changed after preparation"):
        load_prepared(out)


def test_recorded_source_is_in_the_reprepare_command(tmp_path) -> None:
    from spfde_core.data.prepared import prepare_command

    meta = {"name": "cifar10", "source": {"kind": "imagefolder", "path": "/d/cifar10-jpeg.tar.gz"}}
    assert prepare_command(tmp_path / "cifar10", meta) == (
        f"spfde data prepare cifar10 data.source=imagefolder data.path=/d/cifar10-jpeg.tar.gz "
        f"data.prepared_dir={tmp_path} --force"
    )


@pytest.mark.smoke
def test_training_on_a_changed_dataset_stops_before_any_compute(smoke_overrides, tmp_path, capsys) -> None:
    from spfde_core.cli import load_config
    from spfde_core.train.build import prepare, prepared_path

    data = load_config(smoke_overrides).data
    out = prepare(data)
    assert out == prepared_path(data)
    images = np.load(out / "train_images.npy")
    images[0, 0, 0, 0] ^= 1
    np.save(out / "train_images.npy", images)
    _touch_later(out / "train_images.npy")
    assert main(["train", *smoke_overrides]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'train_images.npy'}: changed after preparation" in err and f"`rm -r {out}`" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("metrics.json"))
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").rglob("*.pt"))
