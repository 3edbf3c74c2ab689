"""One training run from a config: refuse to clobber, build, resume, train, write the record."""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from spfde_core import distributed, provenance, records
from spfde_core.config import ConfigError, config_hash, non_default_values, validate
from spfde_core.continual.build import continual_callbacks
from spfde_core.cost import CostMeter
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.freezing.feature_cache import feature_cache_callbacks
from spfde_core.ops.fused_update import FusedUpdateUnavailable
from spfde_core.ops.sparse_layers import SparseKernelUnavailable, attach_sparse_kernels
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.train.build import build_data, build_model_for, resolve_device, resolve_hardware
from spfde_core.train.callbacks import CallbackList, TrainState
from spfde_core.train.checkpoint import Checkpointer, resume
from spfde_core.train.faults import remove_stale_tmp
from spfde_core.train.loggers import TrackerLogger
from spfde_core.train.loop import train
from spfde_core.train.optim import build_optimizer
from spfde_core.train.progress import ProgressBar

log = logging.getLogger("spfde_core.train")


class RunExistsError(RuntimeError):
    """A finished record is already at the run's path and run.force is not set."""


@dataclass(frozen=True)
class RunPaths:
    run_dir: Path
    """results/runs/<reproduction>/<row>/seed<k>: the committed record."""
    work_dir: Path
    """checkpoints/<reproduction>/<row>/seed<k>: checkpoint and live curve (not committed)."""

    @property
    def record(self) -> Path:
        return self.run_dir / records.RECORD_FILE

    @property
    def checkpoint(self) -> Path:
        return self.work_dir / "last.pt"

    @classmethod
    def of(cls, cfg: DictConfig, chash: str) -> RunPaths:
        row = cfg.run.row or f"{cfg.model.name}-{chash}"
        parts = (cfg.run.reproduction, row, f"seed{cfg.run.seed}")
        return cls(Path(cfg.run.results_dir).joinpath(*parts), Path(cfg.run.checkpoint_dir).joinpath(*parts))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CurveWriter:
    """Keeps a live per-epoch curve next to the checkpoint, so a long run can be watched."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def on_epoch_end(self, state: TrainState) -> None:
        records.write_curve(self.work_dir, state.history)


def run_training(cfg: DictConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one run as configured and return its (validated, written) record.

    ``extra_callbacks`` run after the method callbacks and before the built-in ones (cost meter,
    progress, curve, checkpoint); for embedding the trainer and for tests.

    Re-running the same command after a kill resumes from the last epoch's checkpoint; re-running a
    finished run raises RunExistsError unless ``run.force=true``.
    """
    validate(cfg)
    cfg = copy.deepcopy(cfg)  # resolve_hardware fills in 'auto' settings: never in the caller's config
    chash = config_hash(cfg)
    paths = RunPaths.of(cfg, chash)
    if paths.record.exists() and not cfg.run.force:
        previous = records.read_record(paths.record)
        raise RunExistsError(
            f"a finished run is already recorded at {paths.record} "
            f"(final top-1 {previous['results']['final_top1']:.4f}); pass --force or run.force=true "
            "to train it again and replace that record"
        )
    # One process, or torchrun's ranks (docs/distributed.md): the same calls either way, no-ops in one
    # process. Rank 0 alone deletes, writes and logs; every rank reads the same checkpoint on resume.
    procs, device = distributed.start(resolve_device(cfg.train.device))
    procs.quiet_others(log)
    procs.do_on_main(_clear_work_dir, paths, cfg.run.force)
    procs.barrier()  # nobody looks for a checkpoint before rank 0 removed a stale one

    hardware = resolve_hardware(cfg, device)  # precision/channels_last 'auto' -> what this machine runs best
    with procs.main_first():  # rank 0 generates synthetic data once
        data = build_data(cfg, device)  # also checks batch size against the dataset: before compute
    procs.check_loader(data.train, cfg.data.name)
    torch.manual_seed(cfg.run.seed)
    model = build_model_for(cfg, data.record["num_classes"], device)
    procs.prepare_model(model)
    try:
        optimizer, schedules = build_optimizer(model, cfg.optim, cfg.train.epochs, cfg.train.update_impl)
    except FusedUpdateUnavailable as err:
        raise ConfigError(f"train.update_impl: {err}") from None
    state = TrainState(cfg, model, optimizer, schedules, data.train, data.test, device, started_at=_now())

    methods = method_callbacks(cfg, state)
    # Feature-map caching of the frozen prefix (docs/freezing.md): after every method's epoch-start hook.
    methods += feature_cache_callbacks(cfg, state, methods, paths.work_dir, procs.context)
    # The order of the callbacks, stated here only: every hook runs on them in this order.
    before_checkpoint = [
        *methods,  # freezing, sparsity, sieving, sparse kernels, feature cache (method_callbacks)
        *procs.callbacks(),  # several ranks: masks, frozen prefix and active set agree on all of them
        *extra_callbacks,  # see the methods' work of each hook, before it is measured
        CostMeter(),  # reads the methods' masks, frozen prefix and cost events
        *procs.main_callbacks(  # I/O on rank 0 only (none has checkpointed state: every rank's list matches)
            [
                *tracker_loggers(cfg, paths.work_dir),  # mirror the epoch log the cost meter completes
                ProgressBar(cfg.train.progress),
                CurveWriter(paths.work_dir),
            ]
        ),
    ]
    # Last: the checkpointer saves what every callback before it left at the epoch's end.
    checkpointer = Checkpointer(paths.checkpoint, chash, CallbackList(before_checkpoint))
    callbacks = CallbackList([*before_checkpoint, *procs.main_callbacks([checkpointer])])
    if not resume(paths.checkpoint, chash, state, callbacks):
        log.info("run %s (config %s) -> %s", paths.run_dir, chash, paths.record)
    forward = procs.wrap(model, device, cfg)
    forward = torch.compile(forward) if cfg.train.compile else forward

    train(state, callbacks, forward, procs)

    record = {**build_record(cfg, chash, paths, state, data.record), "hardware": hardware, **procs.record_blocks(cfg)}
    side_dir = procs.side_dir(paths.run_dir)
    procs.do_on_main(records.write_curve, paths.run_dir, state.history)
    for callback in callbacks.callbacks:
        if hasattr(callback, "record"):  # methods add their blocks (and side files) to the record
            record.update(callback.record(state, side_dir))
    procs.do_on_main(records.write_record, paths.run_dir, record)
    procs.finish(side_dir)
    log.info(
        "final top-1 %.4f (best %.4f) -> %s",
        record["results"]["final_top1"],
        record["results"]["best_top1"],
        paths.record,
    )
    return record


def _clear_work_dir(paths: RunPaths, force: bool) -> None:
    """Start over on ``run.force`` (a stale checkpoint would be resumed otherwise); drop a killed run's
    half-written temporary files (the atomic writer's) in any case."""
    if force and paths.work_dir.exists():
        shutil.rmtree(paths.work_dir)
    remove_stale_tmp(paths.work_dir, paths.run_dir)


def method_callbacks(cfg: DictConfig, state: TrainState) -> list[Any]:
    """The callbacks of the configured methods, in hook order.

    Continual learning first when on (docs/continual.md), so the task's data and the rehearsal gradient
    are in place before any method's hook reads them. Then freezing: a block frozen at an epoch where
    the sparsity method also mutates must keep the structure it trained with, not freshly grown zero
    weights (SpFDE Alg. 1). Then sparsity, sieving, and the sparse CPU kernels of the sparse layers
    where faster (docs/sparse_kernels.md).
    """
    methods: list[Any] = []
    for axis, registry in (
        ("freezing", FREEZING_METHODS),
        ("sparsity", SPARSITY_METHODS),
        ("sieving", SIEVING_METHODS),
    ):
        try:
            methods += registry.get(cfg[axis].name)(cfg[axis], state)
        except ValueError as err:  # a method's own config check: report it like any config error
            raise ConfigError(f"{axis}={cfg[axis].name}: {err}") from None
    methods = [*continual_callbacks(cfg, state), *methods]  # [] unless continual.name is set
    try:
        methods += attach_sparse_kernels(methods, cfg, state.device)
    except SparseKernelUnavailable as err:
        raise ConfigError(str(err)) from None
    return methods


def tracker_loggers(cfg: DictConfig, work_dir: Path) -> list[Any]:
    """The experiment trackers of ``train.loggers`` (docs/integrations.md), or []."""
    return [TrackerLogger(cfg.train.loggers, work_dir)] if cfg.train.get("loggers") else []


def load_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's machine load from its epochs (``loop.machine_load``); {} when no epoch measured it.

    Epochs trained before this was recorded (a run resumed across the change) have no values, so
    ``load_epochs`` says how many epochs the numbers cover.
    """
    wall_s, cpu_s, loads, measured = 0.0, 0.0, [], 0
    previous_elapsed = 0.0
    for epoch in history:
        if "cpu_s" in epoch:
            measured += 1
            wall_s += epoch["elapsed_s"] - previous_elapsed
            cpu_s += epoch["cpu_s"]
            if "load_1m" in epoch:
                loads.append(epoch["load_1m"])
        previous_elapsed = epoch["elapsed_s"]
    if not measured:
        return {}
    summary: dict[str, Any] = {
        "load_epochs": measured,
        "cpu_s": cpu_s,
        "cpu_per_wall": cpu_s / wall_s if wall_s > 0 else 0.0,
    }
    if loads:
        summary["load_1m_mean"] = sum(loads) / len(loads)
        summary["load_1m_max"] = max(loads)
    return summary


def build_record(
    cfg: DictConfig, chash: str, paths: RunPaths, state: TrainState, data: dict[str, Any]
) -> dict[str, Any]:
    evaluated = [e for e in state.history if "test_acc" in e]
    best = max(evaluated, key=lambda e: e["test_acc"])
    final = state.history[-1]
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run": {
            "reproduction": cfg.run.reproduction,
            "row": paths.run_dir.parent.name,
            "seed": cfg.run.seed,
            "profile": cfg.profile,
            "started_at": state.started_at,
            "finished_at": _now(),
            "resumed_from_epoch": state.resumed_from_epoch,
        },
        "config": OmegaConf.to_container(cfg, resolve=True),
        "config_hash": chash,
        "non_default": non_default_values(cfg),
        "results": {
            "epochs": len(state.history),
            "final_top1": final["test_acc"],
            "best_top1": best["test_acc"],
            "best_epoch": best["epoch"],
            "final_test_loss": final["test_loss"],
            "final_train_loss": final["train_loss"],
            "final_train_acc": final["train_acc"],
        },
        "timing": {
            "wall_clock_s": state.elapsed_s,
            "train_s": state.train_s,
            "train_images_per_s": state.images_trained / state.train_s if state.train_s else 0.0,
            **load_summary(state.history),
        },
        "data": data,
        # Which masked-update implementation ran (docs/fused_update.md); absent for plain optimizers.
        **({"update": state.optimizer.describe()} if hasattr(state.optimizer, "describe") else {}),
        "provenance": provenance.collect(state.device),
        "curve_file": records.CURVE_FILE,
    }
