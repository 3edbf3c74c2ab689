"""train.loggers: each tracker gets every epoch's numbers and the config, offline; bad names stop before compute."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
import yaml

from spfde_core.cli import load_config
from spfde_core.config import ConfigError, config_hash
from spfde_core.train.run import run_training

EPOCHS = 2
EVERY_EPOCH = ("train_loss", "test_acc", "lr", "train_flops", "overhead_flops", "eval_flops", "cum_train_flops")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _run(smoke_overrides: list[str], tracker: str) -> tuple[dict, Path]:
    cfg = load_config([*smoke_overrides, f"train.epochs={EPOCHS}", "sparsity=mest_ems", f"train.loggers=[{tracker}]"])
    record = run_training(cfg)
    work = Path(cfg.run.checkpoint_dir) / "test" / "smoke" / "seed0"
    assert work.is_dir()
    return record, work


def _check_curve(values: dict[str, list[float]], record: dict) -> None:
    for key in (*EVERY_EPOCH, "density", "frozen_blocks", "active_samples"):
        assert len(values[key]) == EPOCHS, key
    assert values["test_acc"][-1] == pytest.approx(record["results"]["final_top1"])
    cum = values["cum_train_flops"]
    assert cum[-1] == pytest.approx(record["cost"]["training_flops"]["total"], rel=1e-6) and cum[0] < cum[1]
    assert 0 < values["density"][-1] < 1


def test_unknown_or_missing_trackers_stop_before_any_compute(smoke_overrides: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.loggers: expected a list of tensorboard, dvclive, mlflow, wandb"):
        run_training(load_config([*smoke_overrides, "train.loggers=[tensorbord]"]))
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="each tracker once"):
        run_training(load_config([*smoke_overrides, "train.loggers=[mlflow,mlflow]"]))


def test_a_missing_tracker_package_names_the_extra(smoke_overrides: list[str], monkeypatch) -> None:
    import spfde_core.train.loggers as loggers

    monkeypatch.setitem(loggers.TRACKERS, "wandb", ("spfde_no_such_module", "wandb"))
    with pytest.raises(ConfigError, match=r"pip install 'spfde-bench\[wandb\]'"):
        run_training(load_config([*smoke_overrides, "train.loggers=[wandb]"]))


def test_loggers_do_not_change_the_config_hash(smoke_overrides: list[str]) -> None:
    plain = load_config(smoke_overrides)
    logged = load_config([*smoke_overrides, "train.loggers=[tensorboard,mlflow]"])
    assert config_hash(plain) == config_hash(logged)


@pytest.mark.smoke
@pytest.mark.skipif(not _has("tensorboard"), reason="tensorboard not installed (pip install -e '.[tensorboard]')")
def test_tensorboard_event_files_read_back(smoke_overrides: list[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record, work = _run(smoke_overrides, "tensorboard")
    events = EventAccumulator(str(work / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    values = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    _check_curve(values, record)
    assert [e.step for e in events.Scalars("test_acc")] == list(range(EPOCHS))
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "mest_ems" in config and "loggers" in config


@pytest.mark.smoke
@pytest.mark.skipif(not _has("dvclive"), reason="dvclive not installed (pip install -e '.[dvclive]')")
def test_dvclive_files_read_back(smoke_overrides: list[str]) -> None:
    record, work = _run(smoke_overrides, "dvclive")
    live = work / "dvclive"
    values = {}
    for tsv in (live / "plots" / "metrics").glob("*.tsv"):
        lines = tsv.read_text().splitlines()[1:]
        values[tsv.stem] = [float(line.split("\t")[-1]) for line in lines]
    _check_curve(values, record)
    params = yaml.safe_load((live / "params.yaml").read_text())
    assert params["sparsity.name"] == "mest_ems" and params["train.epochs"] == EPOCHS
    assert not (live / "dvc.yaml").exists()  # the pipeline's dvc.yaml owns DVC's view


@pytest.mark.smoke
@pytest.mark.skipif(not _has("mlflow"), reason="mlflow not installed (pip install -e '.[mlflow]')")
def test_mlflow_file_store_reads_back(smoke_overrides: list[str], tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    record, _ = _run(smoke_overrides, "mlflow")
    client = MlflowClient(tracking_uri=(tmp_path / "checkpoints" / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "smoke/seed0" and run.data.params["sparsity.name"] == "mest_ems"
    values = {key: [m.value for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics}
    _check_curve(values, record)


def _read_wandb(path: Path) -> tuple[list[dict], dict]:
    """History rows and config of an offline W&B run file (LevelDB-style log of Record protobufs, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunks, buf = 7, [], b""  # 7: the file header (ident, magic, version)
    while pos + 7 <= len(data):
        space = 32768 - pos % 32768
        if space < 7:  # a record header never straddles a block: the rest is padding
            pos += space
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or last of a fragmented record
            chunks.append(buf)
            buf = b""
    history, config = [], {}
    for chunk in chunks:
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
    return history, config


@pytest.mark.smoke
@pytest.mark.skipif(not _has("wandb"), reason="wandb not installed (pip install -e '.[wandb]')")
def test_wandb_offline_run_reads_back(smoke_overrides: list[str], monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record, work = _run(smoke_overrides, "wandb")
    (run_file,) = (work / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = _read_wandb(run_file)
    rows = [row for row in history if "test_acc" in row]
    assert [row["epoch"] for row in rows] == list(range(EPOCHS))
    _check_curve({key: [row[key] for row in rows] for key in rows[0]}, record)
    assert config["sparsity"]["name"] == "mest_ems" and config["train"]["loggers"] == ["wandb"]
