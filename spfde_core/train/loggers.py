"""Experiment trackers: `train.loggers=[tensorboard,dvclive,mlflow,wandb]` mirror a run while it trains.

One callback (``TrackerLogger``, after the cost meter) sends every epoch's numbers to each configured tracker:
the epoch log (losses, top-1, learning rate, times, throughput), the cost split (training, overhead and
evaluation FLOPs of the epoch, cumulative training FLOPs, ratio to dense, model memory), density, frozen blocks
and the active-set size, and once the resolved config. The run record (metrics.json, curve.csv) stays the
source of truth; trackers are a view and never read back. Each tracker is an optional extra
(``pip install 'spfde-bench[tensorboard]'`` ...), imported only when configured; a missing one stops the run
before any compute, naming the extra. Files go to the run's checkpoint folder (not in git): docs/integrations.md.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spfde_core.config import flatten_dotted

log = logging.getLogger("spfde_core.train")

# name -> (module to import, extra that installs it)
TRACKERS = {
    "tensorboard": ("torch.utils.tensorboard", "tensorboard"),
    "dvclive": ("dvclive", "dvclive"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
_IDS_FILE = "loggers.json"  # tracker run ids, so a resumed run continues the same tracker run


class TrackerUnavailable(ImportError):
    """A configured tracker's package is not installed; the message names the extra to install."""


def check_loggers(names: Any) -> None:
    """Raise ValueError for an unknown or repeated name and TrackerUnavailable for a missing package."""
    names = list(names or [])
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"train.loggers: expected a list of {', '.join(TRACKERS)}, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"train.loggers: each tracker once, got {names}")
    for name in names:
        _import(name)


def _import(name: str) -> Any:
    module, extra = TRACKERS[name]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise TrackerUnavailable(
            f"train.loggers: {name} needs its package ({err}); install it with pip install 'spfde-bench[{extra}]' "
            f"(in a checkout: pip install -e '.[{extra}]')"
        ) from None


def epoch_metrics(state: Any) -> dict[str, float]:
    """The numbers of the finished epoch: its log (numeric values), cumulative training FLOPs, frozen blocks."""
    metrics = {
        k: float(v)
        for k, v in state.epoch_log.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    cum = sum(h.get("train_flops", 0) + h.get("overhead_flops", 0) for h in state.history)
    metrics["cum_train_flops"] = float(cum)
    metrics.setdefault("frozen_blocks", float(getattr(state.model, "num_frozen_blocks", 0)))
    metrics["active_samples"] = float(state.train_loader.num_samples)  # the active set (all, without sieving)
    return metrics


class _TensorBoard:
    def __init__(self, cfg: DictConfig, work_dir: Path, ids: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(work_dir / "tensorboard"))
        self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```", 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in sorted(metrics.items()):
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _DVCLive:
    def __init__(self, cfg: DictConfig, work_dir: Path, ids: dict[str, str]) -> None:
        from dvclive import Live

        resume = (work_dir / "dvclive").exists()
        # No dvc.yaml or experiment of its own: the pipeline's dvc.yaml owns those (docs/integrations.md).
        self.live = Live(dir=str(work_dir / "dvclive"), resume=resume, dvcyaml=None, save_dvc_exp=False)
        self.live.log_params(flatten_dotted(OmegaConf.to_container(cfg, resolve=True)))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.live.step = step
        for key, value in sorted(metrics.items()):
            self.live.log_metric(key, value)
        self.live.next_step()

    def close(self) -> None:
        self.live.end()


class _MLflow:
    def __init__(self, cfg: DictConfig, work_dir: Path, ids: dict[str, str]) -> None:
        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):  # default: one local file store for every run
            # MLflow >= 3.7 asks for an explicit opt-in to the file store; MLFLOW_TRACKING_URI picks any other.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((Path(cfg.run.checkpoint_dir) / "mlruns").resolve().as_uri())
        mlflow.set_experiment(cfg.run.reproduction)
        run = mlflow.start_run(run_id=ids.get("mlflow"), run_name=f"{cfg.run.row}/seed{cfg.run.seed}")
        self.run_id = ids["mlflow"] = run.info.run_id
        if ids.get("mlflow_params") != "logged":  # once: a resumed run continues the same MLflow run
            params = flatten_dotted(OmegaConf.to_container(cfg, resolve=True))
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            ids["mlflow_params"] = "logged"

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step, run_id=self.run_id)

    def close(self) -> None:
        self.mlflow.end_run()


class _WandB:
    def __init__(self, cfg: DictConfig, work_dir: Path, ids: dict[str, str]) -> None:
        import wandb

        run_id = ids.get("wandb") or hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:16]
        ids["wandb"] = run_id
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "spfde-bench"),
            group=f"{cfg.run.reproduction}/{cfg.run.row}",
            name=f"{cfg.run.row}/seed{cfg.run.seed}",
            id=run_id,
            resume="allow",
            dir=str(work_dir),
            config=OmegaConf.to_container(cfg, resolve=True),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "epoch": step}, step=step)

    def close(self) -> None:
        self.run.finish()


_BACKENDS = {"tensorboard": _TensorBoard, "dvclive": _DVCLive, "mlflow": _MLflow, "wandb": _WandB}


class TrackerLogger:
    """The callback: opens each tracker at train start, logs every epoch (step = 0-based epoch), closes at end."""

    def __init__(self, names: list[str], work_dir: Path) -> None:
        self.names = list(names)
        self.work_dir = Path(work_dir)
        self.backends: list[Any] = []

    def on_train_start(self, state: Any) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        ids_path = self.work_dir / _IDS_FILE
        ids = json.loads(ids_path.read_text()) if ids_path.exists() else {}
        self.backends = [_BACKENDS[name](state.cfg, self.work_dir, ids) for name in self.names]
        ids_path.write_text(json.dumps(ids, sort_keys=True))
        log.info("trackers %s -> %s", ", ".join(self.names), self.work_dir)

    def on_epoch_end(self, state: Any) -> None:
        metrics = epoch_metrics(state)
        step = len(state.history) - 1
        for backend in self.backends:
            backend.log(metrics, step)

    def on_train_end(self, state: Any) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []
