"""Predict the training cost of a configuration without training: ``predict_cost(cfg) -> CostReport``.

The model is built on the meta device (no memory, no compute), the method's layer sparsities are
applied analytically, and the same per-layer model as the ``CostMeter`` (``flops.py``,
``memory.py``) is evaluated epoch by epoch. What is assumed per method is the method's own, in its
file (``sparsity/config.py``: ``SparseConfig.predicted_sparsities`` and ``predicted_overheads``):

- ``dense`` (no SparseConfig): every weight active, no overheads;
- by default every sparse layer sits at its target from ``sparsity.distributions.layer_sparsities``
  for the whole run (DSR/SNFS reallocate between layers during training; the prediction keeps the
  initial allocation, the meter reads the real one; SNIP/GraSP's data-dependent global allocation
  is approximated by the configured distribution); MEST overrides it with its phases' grow-to
  sparsities;
- overheads (RigL's and SNFS's dense weight gradients, SNIP's and GraSP's scoring passes) are
  what the meter charges for the method's ``CostEvent`` s;
- freezing: a method whose plan is fixed before training (``PrefixFreezing``: spfde_progressive,
  linear, freezeout) is built on the meta model and its frozen prefix per epoch is charged as the
  meter charges it (``freezing/prefix.py: predicted_frozen_blocks``); a method deciding online
  (autofreeze) is counted as no freezing (the report says so);
- feature caching (``feature_cache.store``): per epoch the blocks read from the cache (their
  forward is not charged), the building passes and the cache bytes come from the cache's own file
  (``freezing/feature_cache.py: predict_cache``); memory is the model of the frozen-prefix step (the
  cache itself lives in host memory or on disk: its bytes are reported apart);
- sieving methods other than ``none`` are not modelled (counted as full data; the report says so);
- continual learning (``continual.name``, docs/continual.md): per epoch the current task's samples (DDR's
  removals applied) and the rehearsal passes, charged as the meter charges its ``replay_pass`` events, and
  the per-task evaluation passes at task ends, charged as its ``eval_pass`` events (evaluation FLOPs)
  (``continual/predict.py``); a method with a ``task_epochs`` field left null (``sparcl_tdm``) gets the run's
  epochs per task, so its schedule restarts with every task as in training.

Training samples per epoch: 50,000 for CIFAR-10/100, ``data.synthetic.num_train`` for synthetic,
1,281,167 for ImageNet (ILSVRC-2012 train); test samples 10,000 / ``num_test`` / 50,000.
``train.drop_last`` and ``train.max_batches_per_epoch`` are applied.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from spfde_core.cost.events import Overheads, RunShape
from spfde_core.cost.flops import Split, op_flops, op_macs, prefix_forward, sample_flops, scoring_flops, total
from spfde_core.cost.layers import ModelProfile, profile_model
from spfde_core.cost.memory import SPARSE_FORMAT, memory_model
from spfde_core.cost.meter import SAVING_ORDER, baseline_epoch_samples, evaluation_block, input_shape_of
from spfde_core.data import get_dataset_info
from spfde_core.models import build_model

TRAIN_SAMPLES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167, "tiny_imagenet": 100_000}
TEST_SAMPLES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 50_000, "tiny_imagenet": 10_000}


@dataclass(frozen=True)
class LayerRow:
    """One conv/linear layer (or one kind of elementwise op, summed) of the prediction."""

    name: str
    kind: str
    block: int | None
    weights: int
    """Dense weight count (conv/linear); 0 for the elementwise rows."""
    density: float
    """Mean density over the training epochs (1.0 for dense layers and elementwise rows)."""
    forward: float
    """Mean per-sample forward FLOPs over training (training mode)."""
    input_grad: float
    weight_grad: float
    run_flops: int
    """FLOPs of this row over all training steps."""


@dataclass
class CostReport:
    """Predicted cost of one configuration: per-layer rows, totals, memory and the assumptions."""

    config: dict[str, Any]
    rows: list[LayerRow]
    training_flops: dict[str, Any]
    conv_linear_macs: dict[str, Any]
    evaluation_flops: dict[str, Any]
    samples: dict[str, Any]
    memory: dict[str, Any]
    assumptions: list[str] = field(default_factory=list)
    feature_cache: dict[str, Any] | None = None
    """``feature_cache.store`` on: the planned builds, their FLOPs and bytes (``CachePrediction.as_dict``)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}


def dataset_sizes(cfg: DictConfig) -> tuple[int, int, int]:
    """(training samples, test samples, classes) of the configured dataset, without reading it."""
    name = cfg.data.name
    if name == "synthetic":
        s = cfg.data.synthetic
        return int(s.num_train), int(s.num_test), int(s.num_classes)
    return TRAIN_SAMPLES[name], TEST_SAMPLES[name], get_dataset_info(name).num_classes


def _build_meta_model(cfg: DictConfig, num_classes: int) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(cfg.model.name, num_classes, width=cfg.model.width)


def _layer_targets(cfg: DictConfig, model: torch.nn.Module) -> dict[str, float]:
    from spfde_core.sparsity.distributions import layer_sparsities_from_config

    return layer_sparsities_from_config(model, cfg.sparsity)


def _active_counts(cfg: DictConfig, model: torch.nn.Module, sparsities: dict[str, float]) -> dict[str, int]:
    from spfde_core.sparsity.schemes import get_scheme

    if not sparsities:  # dense: the config node has no scheme fields
        return {}
    sp = cfg.sparsity
    params = {"block": {"block_size": sp.block_size}, "nm": {"n": sp.nm_n, "m": sp.nm_m}}
    scheme = get_scheme(sp.scheme, **params.get(sp.scheme, {}))
    shapes = {layer.name: layer.weight.shape for layer in model.prunable_layers()}
    return {name: scheme.active_count(shapes[name], s) for name, s in sparsities.items()}


def epoch_sparsities(cfg: DictConfig, model: torch.nn.Module) -> list[dict[str, float]]:
    """Per training epoch, the sparsity of every sparse layer between mask updates."""
    from spfde_core.continual.predict import task_epochs
    from spfde_core.sparsity.config import sparse_config

    epochs = int(cfg.train.epochs)
    method = sparse_config(cfg.sparsity)
    if method is None:  # dense
        return [{} for _ in range(epochs)]
    if getattr(method, "task_epochs", 0) is None:  # a per-task schedule (sparcl_tdm): the run's tasks
        method.task_epochs = task_epochs(cfg)
    return method.predicted_sparsities(_layer_targets(cfg, model), epochs)


def predict_cost(cfg: DictConfig, memory_batch_size: int = 64) -> CostReport:
    """The cost of training ``cfg`` as the ``CostMeter`` would record it, without training.

    Args:
        cfg: a composed config (``spfde_core.cli.load_config``).
        memory_batch_size: batch size of the memory model (SpFDE's figure: 64).

    Returns:
        A ``CostReport`` (``format_cost_table`` prints it; ``to_dict`` for JSON).
    """
    from spfde_core.continual.predict import continual_plan
    from spfde_core.freezing.feature_cache import predict_cache
    from spfde_core.freezing.prefix import predicted_frozen_blocks

    num_train, num_test, num_classes = dataset_sizes(cfg)
    model = _build_meta_model(cfg, num_classes)
    profile = profile_model(model, input_shape_of(cfg))
    t = cfg.train
    batch, epochs = int(t.batch_size), int(t.epochs)
    per_epoch = baseline_epoch_samples(num_train, batch, bool(t.drop_last), t.max_batches_per_epoch)
    steps_per_epoch = math.ceil(per_epoch / batch)
    plan = continual_plan(cfg, num_train)  # None unless continual learning: then per-task samples and replay
    presented = [p.samples for p in plan] if plan else [per_epoch] * epochs
    sparsities = epoch_sparsities(cfg, model)
    actives = [_active_counts(cfg, model, s) for s in sparsities]
    assumptions = [f"sparsity={cfg.sparsity.name}: see spfde_core/cost/predict.py for what is assumed"]
    frozen = predicted_frozen_blocks(cfg, model)
    if frozen is None:
        assumptions.append(f"freezing={cfg.freezing.name} decides online: not modelled, counted as none")
        if cfg.get("feature_cache") and cfg.feature_cache.store != "none":
            assumptions.append("feature cache: not predicted without a freezing plan (no build counted)")
        frozen = [0] * epochs
    cached = predict_cache(cfg, model, profile, frozen, actives, num_train)
    skips = cached.start_block if cached else [0] * epochs
    if cfg.sieving.name != "none":
        assumptions.append(f"sieving={cfg.sieving.name} is not modelled by the prediction: counted as none")
        if cached:
            assumptions.append("feature cache: every sample counted as cached (sieving caches the active set only)")

    dense = sample_flops(profile).total
    cache: dict[tuple, dict[str, Any]] = {}

    def costs(active: dict[str, int], k: int, skip: int) -> dict[str, Any]:
        """Per-sample costs of a step with ``k`` blocks frozen, the first ``skip`` read from the feature cache."""
        key = (tuple(sorted(active.items())), k, skip)
        if key not in cache:
            skipped = prefix_forward(profile, None, skip)[0] if skip else 0
            cache[key] = {
                "ops": _no_forward_before(profile, op_flops(profile, active, k), skip),
                "macs": total(_no_forward_before(profile, op_macs(profile, active, k), skip), unit="MACs"),
                "eval": sample_flops(profile, active, k, mode="eval").forward,
                "frozen_dense": sample_flops(profile, None, k).total - skipped,
                "memory": memory_model(profile, active, k, memory_batch_size).as_dict(),
            }
        return cache[key]

    op_totals = [Split() for _ in profile.ops]
    macs = Split(unit="MACs")
    eval_total = eval_passes = saving_freezing = 0
    extra_eval = extra_passes = 0  # the methods' own evaluation passes (continual: per task), as eval_pass events
    memories = []
    for epoch, active in enumerate(actives):
        c = costs(active, frozen[epoch], skips[epoch])
        n = presented[epoch]
        op_totals = [a + o.scale(n) for a, o in zip(op_totals, c["ops"], strict=True)]
        macs = macs + c["macs"].scale(n)
        saving_freezing += n * (dense - c["frozen_dense"])
        if (epoch + 1) % int(t.eval_every_epochs) == 0 or epoch + 1 == epochs:
            eval_total += num_test * c["eval"]
            eval_passes += 1
        if plan and plan[epoch].eval_passes:  # at the epoch's masks: the meter reads them after the last step
            extra_eval += plan[epoch].eval_passes * num_test * c["eval"]
            extra_passes += plan[epoch].eval_passes
        memories.append(c["memory"])
    steps = sum(op_totals, Split())
    baseline = epochs * per_epoch * dense
    sieving = (epochs * per_epoch - sum(presented)) * dense
    run = RunShape(profile, actives, epochs, steps_per_epoch, per_epoch, batch, num_classes, frozen=frozen)
    overheads = _overheads(cfg, run)
    if plan and any(p.replay for p in plan):  # the meter's replay_pass events: forward + backward at the live masks
        passes = {"forward": 1, "backward": 1}
        replay = sum(p.replay * scoring_flops(profile, actives[e], passes) for e, p in enumerate(plan))
        overheads["replay_passes"] = replay
        overheads["total"] += replay
    if cached and sum(cached.build_flops):
        overheads["feature_cache_build"] = sum(cached.build_flops)
        overheads["total"] += overheads["feature_cache_build"]
    total_flops = steps.total + overheads["total"]
    rows = _rows(profile, op_totals, actives, sum(presented))
    max_mem = max(memories, key=lambda mm: mm["total"]) if memories else None
    min_mem = min(memories, key=lambda mm: mm["total"]) if memories else None
    return CostReport(
        config={
            "model": cfg.model.name,
            "width": cfg.model.width,
            "data": cfg.data.name,
            "input_shape": list(profile.input_shape),
            "epochs": epochs,
            "batch_size": batch,
            "sparsity": cfg.sparsity.name,
            "target": cfg.sparsity.get("target"),
            "freezing": cfg.freezing.name,
            "sieving": cfg.sieving.name,
            "feature_cache": cfg.feature_cache.store if cfg.get("feature_cache") else "none",
            "frozen_blocks_per_epoch": frozen,
        },
        rows=rows,
        training_flops={
            "baseline_dense_full_data": baseline,
            "steps": steps.as_dict(),
            "savings": {
                "order": list(SAVING_ORDER),
                # continual learning trains one task's samples an epoch: the meter books the rest as sieving
                "sieving": sieving,
                "freezing": saving_freezing,
                "sparsity": baseline - sieving - saving_freezing - steps.total,
            },
            "overheads": overheads,
            "total": total_flops,
            "ratio_to_dense": total_flops / baseline if baseline else None,
            "ratio_steps_only": steps.total / baseline if baseline else None,
        },
        conv_linear_macs=macs.as_dict(),
        evaluation_flops=evaluation_block(
            eval_total, eval_passes, eval_passes * num_test, extra_eval, extra_passes, extra_passes * num_test
        ),
        samples={
            "full_dataset": num_train,
            "per_epoch": per_epoch,
            "steps_per_epoch": steps_per_epoch,
            "presented": sum(presented),
            "dense_training_step_flops_per_sample": dense,
        },
        memory={
            "batch_size": memory_batch_size,
            "dtype": "float32",
            "sparse_format": SPARSE_FORMAT,
            "min_bytes": min_mem["total"] if min_mem else None,
            "avg_bytes": sum(mm["total"] for mm in memories) / len(memories) if memories else None,
            "max_bytes": max_mem["total"] if max_mem else None,
            "at_max": max_mem,
            "dense_bytes": memory_model(profile, None, 0, memory_batch_size).total,
        },
        assumptions=assumptions,
        feature_cache=cached.as_dict() if cached else None,
    )


def _no_forward_before(profile: ModelProfile, splits: list[Split], skip: int) -> list[Split]:
    """Per-op work of a step reading the first ``skip`` blocks' maps from the feature cache: their forward is
    not run (the meter's rule, ``CostMeter._costs``); a frozen prefix has no backward work to drop."""
    return [
        Split(0, s.input_grad, s.weight_grad, s.unit) if op.block < skip else s
        for op, s in zip(profile.ops, splits, strict=True)
    ]


def _overheads(cfg: DictConfig, run: RunShape) -> dict[str, int]:
    """The sparsity method's own prediction of the FLOPs it spends outside the training steps."""
    from spfde_core.sparsity.config import sparse_config

    method = sparse_config(cfg.sparsity)
    return (Overheads() if method is None else method.predicted_overheads(run)).as_dict()


def _rows(profile: ModelProfile, op_totals: list[Split], actives: list[dict[str, int]], samples: int) -> list[LayerRow]:
    rows = []
    grouped: dict[str, Split] = {}
    for op, tot in zip(profile.ops, op_totals, strict=True):
        if op.kind in ("conv", "linear"):
            density = sum(a.get(op.module, op.weight_numel) for a in actives) / (max(len(actives), 1) * op.weight_numel)
            rows.append(
                LayerRow(
                    name=op.name,
                    kind=op.kind,
                    block=op.block,
                    weights=op.weight_numel,
                    density=density,
                    forward=tot.forward / samples if samples else 0.0,
                    input_grad=tot.input_grad / samples if samples else 0.0,
                    weight_grad=tot.weight_grad / samples if samples else 0.0,
                    run_flops=tot.total,
                )
            )
        elif op.kind != "other":
            grouped[op.kind] = grouped.get(op.kind, Split()) + tot
    for kind, tot in grouped.items():
        rows.append(
            LayerRow(
                name=f"(all {kind})",
                kind=kind,
                block=None,
                weights=0,
                density=1.0,
                forward=tot.forward / samples if samples else 0.0,
                input_grad=tot.input_grad / samples if samples else 0.0,
                weight_grad=tot.weight_grad / samples if samples else 0.0,
                run_flops=tot.total,
            )
        )
    return rows


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def format_cost_table(report: CostReport) -> str:
    """The report as plain text: a per-layer table (per-sample FLOPs) then the run totals."""
    c = report.config
    lines = [
        f"model {c['model']} on {c['data']} {tuple(c['input_shape'])}, {c['epochs']} epochs x batch "
        f"{c['batch_size']}, sparsity={c['sparsity']}"
        + (f" (target {c['target']})" if c["target"] is not None and c["sparsity"] != "dense" else "")
        + f", freezing={c['freezing']}, sieving={c['sieving']}",
        "FLOPs: 1 multiply or 1 add = 1 FLOP (conv/linear: 2 x MACs); per-sample columns are training-step "
        "means over the run",
        "",
    ]
    header = (
        "layer",
        "kind",
        "block",
        "weights",
        "density",
        "fwd/sample",
        "in-grad/sample",
        "w-grad/sample",
        "run FLOPs",
    )
    table = [header]
    for r in report.rows:
        table.append(
            (
                r.name,
                r.kind,
                "" if r.block is None else str(r.block),
                f"{r.weights:,}" if r.weights else "",
                f"{r.density:.4f}" if r.weights else "",
                _si(r.forward),
                _si(r.input_grad),
                _si(r.weight_grad),
                _si(r.run_flops),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    tf = report.training_flops
    steps = tf["steps"]
    ov = tf["overheads"]
    mem = report.memory
    ratio = tf["ratio_to_dense"]
    lines += [
        "",
        f"training steps     {_si(steps['total'], 'FLOPs')}  (forward {_si(steps['forward'], 'FLOPs')}, input grad "
        f"{_si(steps['input_grad'], 'FLOPs')}, weight grad {_si(steps['weight_grad'], 'FLOPs')})",
        f"method overheads   {_si(ov['total'], 'FLOPs')}  (dense weight grads {_si(ov['dense_weight_grad'], 'FLOPs')}, "
        f"scoring passes {_si(ov['scoring_passes'], 'FLOPs')}"
        + (f", feature cache builds {_si(ov['feature_cache_build'], 'FLOPs')}" if "feature_cache_build" in ov else "")
        + ")",
        f"training total     {_si(tf['total'], 'FLOPs')}",
        f"dense baseline     {_si(tf['baseline_dense_full_data'], 'FLOPs')}  (dense, full data, no freezing)",
        f"training FLOPs (x) {ratio:.4f}" if ratio is not None else "training FLOPs (x) -",
        f"conv/linear MACs   {_si(report.conv_linear_macs['total'], 'MACs')}",
        f"evaluation         {_si(report.evaluation_flops['total'], 'FLOPs')}  ({report.evaluation_flops['passes']} "
        f"passes"
        + (
            f", {report.evaluation_flops['method_passes']['passes']} of them a method's own"
            if "method_passes" in report.evaluation_flops
            else ""
        )
        + ", not in the training total)",
        f"memory model       min {_si(mem['min_bytes'], 'B')}, avg {_si(mem['avg_bytes'], 'B')}, max "
        f"{_si(mem['max_bytes'], 'B')} (fp32, batch {mem['batch_size']}; dense {_si(mem['dense_bytes'], 'B')}; "
        f"sparse weights: {mem['sparse_format']})",
    ]
    fc = report.feature_cache
    if fc is not None:
        sizes = ", ".join(f"k={k}: {_si(b, 'B')}" for k, b in fc["bytes_by_frozen_blocks"].items()) or "-"
        lines.append(
            f"feature cache      {len(fc['builds'])} builds, largest {_si(fc['max_bytes'], 'B')} (by frozen blocks: "
            f"{sizes}); {len(fc['fallbacks'])} epochs over budget, recomputed"
        )
    lines += [f"note: {a}" for a in report.assumptions]
    return "\n".join(lines)
