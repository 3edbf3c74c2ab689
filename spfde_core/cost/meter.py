"""``CostMeter``: the training-cost callback (FLOPs per step from the live state, memory, overheads).

Per training step it reads the live state *before the forward pass* (``on_batch_start``): every
conv/linear's active weights (``weight_mask``; layers without a mask are dense) and
``model.num_frozen_blocks``, and charges ``samples x per-sample FLOPs`` (``flops.py``) when the step
ends. Per-sample numbers are cached per state: the masks' version counters (bumped by every
in-place write) say when a recount is needed, so an unchanged step costs a few microseconds.

Savings are split by source in a fixed order, per step with B samples, D = dense per-sample FLOPs
with nothing frozen, F(d, k) = per-sample FLOPs at densities d with k blocks frozen:

1. sieving: (samples a full-data epoch presents - samples presented) x D, per epoch;
2. freezing: B x (D - F(1, k));
3. sparsity: B x (F(1, k) - F(d, k)).

So baseline - sieving - freezing - sparsity = the FLOPs of the steps taken, exactly (integers).
Method overheads (``state.cost_events``, typed ``CostEvent`` s: ``events.py``) are charged on top,
evaluation passes separately: the trainer's (each epoch with ``test_acc``) and a method's own ``eval_pass``
events (continual learning's per-task evaluation), both at the live masks, never in the training total.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spfde_core.cost.events import CostEvent
from spfde_core.cost.flops import (
    Split,
    dense_weight_grad_extra,
    prefix_forward,
    sample_flops,
    sample_macs,
    scoring_flops,
)
from spfde_core.cost.layers import ModelProfile, profile_model
from spfde_core.cost.memory import SPARSE_FORMAT, measured_peak, memory_model
from spfde_core.data import get_dataset_info

COST_VERSION = 1
SAVING_ORDER = ("sieving", "freezing", "sparsity")

_TOTAL_KEYS = (
    "steps",
    "samples",
    "baseline_samples",
    "baseline_flops",
    "fwd",
    "ig",
    "wg",
    "mac_fwd",
    "mac_ig",
    "mac_wg",
    "saving_sieving",
    "saving_freezing",
    "saving_sparsity",
    "overhead_dense_weight_grad",
    "overhead_scoring",
    "eval_flops",
    "eval_samples",
    "eval_passes",
    "eval_extra_flops",
    "eval_extra_samples",
    "eval_extra_passes",
    "events_done",
    "epochs",
    "memory_steps",
    "memory_sum",
    "dense_grad_every_step",
    "overhead_feature_cache",
    "overhead_replay",
)


def input_shape_of(cfg: Any) -> tuple[int, int, int]:
    """Per-sample input shape of the configured dataset (RGB, square)."""
    if cfg.data.name == "synthetic":
        size = int(cfg.data.synthetic.image_size)
    else:
        size = get_dataset_info(cfg.data.name).image_size
    return (3, size, size)


def full_train_samples(loader: Any) -> int:
    """Samples of the whole training split, whatever subset sieving has made active."""
    return int(loader.dataset_size)


def baseline_epoch_samples(full: int, batch_size: int, drop_last: bool, max_batches: int | None) -> int:
    """Samples one epoch of the dense, full-data run presents (drop_last and the batch cap applied)."""
    n = (full // batch_size) * batch_size if drop_last else full
    if max_batches:
        n = min(n, max_batches * batch_size)
    return n


class _LiveState:
    """Reads active counts and the frozen prefix; recounts a mask only when its version changed."""

    def __init__(self, model: torch.nn.Module, profile: ModelProfile) -> None:
        self.model = model
        modules = dict(_named_block_modules(model))
        self.layers = [(op.module, modules[op.module]) for op in profile.weight_ops()]
        self._seen: dict[str, tuple[int, int, int]] = {}  # name -> (id(mask), version, count)

    def read(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        active = []
        for name, module in self.layers:
            mask = getattr(module, "weight_mask", None)
            if mask is None:
                continue
            key = (id(mask), mask._version)
            seen = self._seen.get(name)
            if seen is None or seen[:2] != key:
                seen = (*key, int(torch.count_nonzero(mask)))
                self._seen[name] = seen
            active.append((name, seen[2]))
        return int(getattr(self.model, "num_frozen_blocks", 0)), tuple(active)


def active_counts(model: torch.nn.Module) -> dict[str, int]:
    """Active weights of every conv/linear carrying a ``weight_mask`` (layers without one are dense)."""
    return {
        name: int(torch.count_nonzero(module.weight_mask))
        for name, module in _named_block_modules(model)
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and hasattr(module, "weight_mask")
    }


def _named_block_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    out = []
    for block_name, block in zip(model.block_names, model.blocks, strict=True):
        for sub_name, module in block.named_modules():
            out.append((f"{block_name}.{sub_name}" if sub_name else block_name, module))
    return out


class CostMeter:
    """Training-cost callback: FLOPs split by source, overheads, evaluation, memory model and peak.

    Args:
        memory_batch_size: batch size of the memory model (SpFDE's figure: 64).
        num_train: samples of the full training split; None reads it from the loader.

    Adds ``train_flops``, ``overhead_flops``, ``eval_flops``, ``train_flops_ratio`` and
    ``memory_model_bytes`` to each epoch's log and a ``cost`` block to the run record.
    """

    def __init__(self, memory_batch_size: int = 64, num_train: int | None = None) -> None:
        self.memory_batch_size = memory_batch_size
        self.num_train = num_train
        self.totals: dict[str, int] = dict.fromkeys(_TOTAL_KEYS, 0)
        self.memory_min: dict[str, int] | None = None
        self.memory_max: dict[str, int] | None = None
        self.dense_sample_flops = 0
        self.profile: ModelProfile | None = None
        self._live: _LiveState | None = None
        self._cache: dict[tuple, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._epoch: dict[str, int] = {}
        self._checked_shape = False

    # ---- hooks -------------------------------------------------------------------------------
    def on_train_start(self, state: Any) -> None:
        self._profile(state, input_shape_of(state.cfg))
        if self.num_train is None:
            self.num_train = full_train_samples(state.train_loader)
        if state.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(state.device)

    def on_epoch_start(self, state: Any) -> None:
        self._epoch = {"samples": 0, "train": 0, "overhead": 0, "eval": 0}

    def on_batch_start(self, state: Any, batch: Any) -> None:
        # Feature cache (docs/freezing.md): a batch of cached maps skips the frozen prefix's forward;
        # the passes that built the cache are charged once, at the first step reading it.
        cache = getattr(state, "epoch_loader", None)
        skip = getattr(cache, "start_block", 0)
        if not self._checked_shape and not skip:
            self._checked_shape = True
            shape = tuple(batch.images.shape[1:])
            if self.profile is None or shape != self.profile.input_shape:
                self._profile(state, shape)
        self._current = self._costs(*self._live.read(), skip)
        for build in cache.pop_builds() if skip else ():
            fwd, _ = prefix_forward(self.profile, self._current["active"], build["blocks"], mode="eval")
            flops = build["samples"] * build["forwards"] * fwd
            self.totals["overhead_feature_cache"] += flops
            self._epoch["overhead"] = self._epoch.get("overhead", 0) + flops
        self._process_events(state)

    def after_step(self, state: Any, step: Any) -> None:
        b = len(step.indices)
        cur = self._current
        act: Split = cur["flops"]
        macs: Split = cur["macs"]
        t = self.totals
        t["steps"] += 1
        t["samples"] += b
        t["fwd"] += b * act.forward
        t["ig"] += b * act.input_grad
        t["wg"] += b * act.weight_grad
        t["mac_fwd"] += b * macs.forward
        t["mac_ig"] += b * macs.input_grad
        t["mac_wg"] += b * macs.weight_grad
        t["saving_freezing"] += b * (self.dense_sample_flops - cur["frozen_dense"])
        t["saving_sparsity"] += b * (cur["frozen_dense"] - act.total)
        mem = cur["memory"]
        t["memory_steps"] += 1
        t["memory_sum"] += mem.total
        if self.memory_min is None or mem.total < self.memory_min["total"]:
            self.memory_min = mem.as_dict()
        if self.memory_max is None or mem.total > self.memory_max["total"]:
            self.memory_max = mem.as_dict()
        self._epoch["samples"] += b
        self._epoch["train"] += b * act.total
        self._epoch["memory_max"] = max(self._epoch.get("memory_max", 0), mem.total)
        if t["dense_grad_every_step"]:  # e.g. SNFS keeps a dense momentum: dense weight gradient each step
            if "dense_wg_extra" not in cur:
                every = {op.module for op in self.profile.weight_ops()}
                cur["dense_wg_extra"] = dense_weight_grad_extra(self.profile, cur["active"], cur["frozen"], every)
            extra = b * cur["dense_wg_extra"]
            t["overhead_dense_weight_grad"] += extra
            self._epoch["overhead"] = self._epoch.get("overhead", 0) + extra
        self._process_events(state, step_samples=b)

    def on_epoch_end(self, state: Any) -> None:
        self._ensure_profile(state)
        self._process_events(state)
        cfg = state.cfg
        baseline = baseline_epoch_samples(
            self.num_train, cfg.train.batch_size, cfg.train.drop_last, cfg.train.max_batches_per_epoch
        )
        t = self.totals
        t["epochs"] += 1
        t["baseline_samples"] += baseline
        t["baseline_flops"] += baseline * self.dense_sample_flops
        t["saving_sieving"] += (baseline - self._epoch.get("samples", 0)) * self.dense_sample_flops
        eval_flops = self._epoch.get("eval", 0)  # the methods' eval_pass events of this epoch
        if "test_acc" in state.epoch_log:
            n = int(state.test_loader.num_samples)
            trainer_eval = n * self._costs(*self._live.read())["eval"]
            eval_flops += trainer_eval
            t["eval_flops"] += trainer_eval
            t["eval_samples"] += n
            t["eval_passes"] += 1
        train, overhead = self._epoch.get("train", 0), self._epoch.get("overhead", 0)
        state.epoch_log.update(
            train_flops=train,
            overhead_flops=overhead,
            eval_flops=eval_flops,
            train_flops_ratio=(train + overhead) / (baseline * self.dense_sample_flops) if baseline else 0.0,
            memory_model_bytes=self._epoch.get("memory_max", 0),
        )

    def on_train_end(self, state: Any) -> None:
        self._ensure_profile(state)
        self._process_events(state)

    # ---- the record block ----------------------------------------------------------------------
    def record(self, state: Any, run_dir: Path) -> dict[str, Any]:
        self._ensure_profile(state)
        self._process_events(state)
        return {"cost": self.summary(state)}

    def summary(self, state: Any) -> dict[str, Any]:
        t = self.totals
        steps = Split(t["fwd"], t["ig"], t["wg"])
        macs = Split(t["mac_fwd"], t["mac_ig"], t["mac_wg"], unit="MACs")
        overheads = (
            t["overhead_dense_weight_grad"] + t["overhead_scoring"] + t["overhead_feature_cache"] + t["overhead_replay"]
        )
        total = steps.total + overheads
        baseline = t["baseline_flops"]
        dense_memory = memory_model(self.profile, None, 0, self.memory_batch_size)
        return {
            "version": COST_VERSION,
            "doc": "docs/cost.md",
            "units": "FLOPs (1 multiply or 1 add = 1 FLOP; conv/linear FLOPs = 2 x MACs); memory in bytes",
            "training_flops": {
                "baseline_dense_full_data": baseline,
                "steps": steps.as_dict(),
                "savings": {
                    "order": list(SAVING_ORDER),
                    "sieving": t["saving_sieving"],
                    "freezing": t["saving_freezing"],
                    "sparsity": t["saving_sparsity"],
                },
                "overheads": {
                    "dense_weight_grad": t["overhead_dense_weight_grad"],
                    "scoring_passes": t["overhead_scoring"],
                    **({"feature_cache_build": t["overhead_feature_cache"]} if t["overhead_feature_cache"] else {}),
                    # continual learning's rehearsal passes (docs/continual.md); absent elsewhere
                    **({"replay_passes": t["overhead_replay"]} if t["overhead_replay"] else {}),
                    "total": overheads,
                },
                "total": total,
                "ratio_to_dense": total / baseline if baseline else None,
                "ratio_steps_only": steps.total / baseline if baseline else None,
            },
            "conv_linear_macs": macs.as_dict(),
            "evaluation_flops": evaluation_block(
                t["eval_flops"],
                t["eval_passes"],
                t["eval_samples"],
                t["eval_extra_flops"],
                t["eval_extra_passes"],
                t["eval_extra_samples"],
            ),
            "samples": {
                "full_dataset": self.num_train,
                "presented": t["samples"],
                "baseline": t["baseline_samples"],
                "skipped": t["baseline_samples"] - t["samples"],
                "steps": t["steps"],
                "epochs": t["epochs"],
            },
            "per_sample_flops": {
                "dense_training_step": self.dense_sample_flops,
                "mean_actual_training_step": steps.total / t["samples"] if t["samples"] else None,
            },
            "memory": {
                "model": {
                    "batch_size": self.memory_batch_size,
                    "dtype": "float32",
                    "sparse_format": SPARSE_FORMAT,
                    "min_bytes": self.memory_min["total"] if self.memory_min else None,
                    "avg_bytes": t["memory_sum"] / t["memory_steps"] if t["memory_steps"] else None,
                    "max_bytes": self.memory_max["total"] if self.memory_max else None,
                    "at_min": self.memory_min,
                    "at_max": self.memory_max,
                    "dense_bytes": dense_memory.total,
                },
                "measured": measured_peak(state.device),
            },
        }

    # ---- checkpoint --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "totals": dict(self.totals),
            "num_train": self.num_train,
            "memory_min": self.memory_min,
            "memory_max": self.memory_max,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals = dict.fromkeys(_TOTAL_KEYS, 0) | {k: int(v) for k, v in state["totals"].items()}
        self.num_train = state["num_train"]
        self.memory_min = state["memory_min"]
        self.memory_max = state["memory_max"]

    # ---- internals ---------------------------------------------------------------------------
    def _ensure_profile(self, state: Any) -> None:
        if self.profile is None:
            self._profile(state, input_shape_of(state.cfg))
        if self.num_train is None:
            self.num_train = full_train_samples(state.train_loader)

    def _profile(self, state: Any, shape: tuple[int, ...]) -> None:
        self.profile = profile_model(state.model, shape)
        self._live = _LiveState(state.model, self.profile)
        self._cache = {}
        self.dense_sample_flops = sample_flops(self.profile).total

    def _costs(self, frozen: int, active: tuple[tuple[str, int], ...], skip: int = 0) -> dict[str, Any]:
        """Per-sample costs of the state (frozen prefix, active counts, leading blocks read from the feature cache)."""
        key = (frozen, active, skip)
        cached = self._cache.get(key)
        if cached is None:
            counts = dict(active)
            cached = {
                "active": counts,
                "frozen": frozen,
                "flops": sample_flops(self.profile, counts, frozen),
                "macs": sample_macs(self.profile, counts, frozen),
                "frozen_dense": sample_flops(self.profile, None, frozen).total,
                "eval": sample_flops(self.profile, counts, frozen, mode="eval").forward,
                "memory": memory_model(self.profile, counts, frozen, self.memory_batch_size),
            }
            if skip:  # no forward of the cached prefix: a saving of freezing (the cache is a freezing option)
                fwd, mac = prefix_forward(self.profile, counts, skip)
                f, m = cached["flops"], cached["macs"]
                cached["flops"] = Split(f.forward - fwd, f.input_grad, f.weight_grad)
                cached["macs"] = Split(m.forward - mac, m.input_grad, m.weight_grad, "MACs")
                cached["frozen_dense"] -= prefix_forward(self.profile, None, skip)[0]
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _process_events(self, state: Any, step_samples: int | None = None) -> None:
        """Charge the method overheads appended to ``state.cost_events`` since the last call."""
        events = state.cost_events
        if self.profile is None or self.totals["events_done"] >= len(events):
            return
        cur = self._current or self._costs(*self._live.read())
        for event in events[self.totals["events_done"] :]:
            event = CostEvent.coerce(event)
            if event.kind == "eval_pass":  # evaluation, not training: kept out of the overheads
                self._charge_eval_pass(event)
            else:
                flops = self._event_flops(state, event, cur, step_samples)
                dense = event.kind.startswith("dense_weight_grad")
                key = "overhead_dense_weight_grad" if dense else "overhead_scoring"
                key = "overhead_replay" if event.kind == "replay_pass" else key
                self.totals[key] += flops
                if self._epoch:
                    self._epoch["overhead"] = self._epoch.get("overhead", 0) + flops
            self.totals["events_done"] += 1

    def _charge_eval_pass(self, event: CostEvent) -> None:
        """A method's own evaluation pass: evaluation FLOPs (inference forward, BN in eval mode) at the live masks.

        Read now, not at the last step's start (``self._current``): the pass ran after the epoch's steps, like the
        trainer's evaluation, which this charges the same way (docs/cost.md, "Evaluation").
        """
        n = int(event.samples or 0)
        flops = n * self._costs(*self._live.read())["eval"]
        t = self.totals
        t["eval_extra_flops"] += flops
        t["eval_extra_samples"] += n
        t["eval_extra_passes"] += 1
        if self._epoch:
            self._epoch["eval"] = self._epoch.get("eval", 0) + flops

    def _event_flops(self, state: Any, event: CostEvent, cur: dict[str, Any], step_samples: int | None) -> int:
        kind = event.kind
        if kind == "dense_weight_grad_every_step":
            self.totals["dense_grad_every_step"] = 1  # charged from the next step on, in after_step
            return 0
        if kind == "dense_weight_grad":
            # The step already charged the sparse weight gradient; add the rest of the dense one.
            layers = set(event.layers or [op.module for op in self.profile.weight_ops()])
            same_step = step_samples is not None and event.step == state.step
            b = step_samples if same_step else int(event.samples or state.cfg.train.batch_size)
            return b * dense_weight_grad_extra(self.profile, cur["active"], cur["frozen"], layers)
        # scoring_pass, replay_pass (at the live masks: density None)
        counts = None if event.density == "dense" else cur["active"]
        return int(event.samples or 0) * scoring_flops(self.profile, counts, event.passes or {})


def evaluation_block(
    flops: int, passes: int, samples: int, extra_flops: int = 0, extra_passes: int = 0, extra_samples: int = 0
) -> dict[str, Any]:
    """The record's ``evaluation_flops``: the trainer's passes plus the methods' ``eval_pass`` events.

    ``total`` / ``passes`` / ``samples`` count both; ``method_passes`` (continual learning's per-task evaluation,
    docs/continual.md) splits the methods' share out and is absent when there is none, so records of ordinary
    runs keep their form. ``spfde cost`` builds its prediction with this function too (``predict.py``).
    """
    block: dict[str, Any] = {
        "total": flops + extra_flops,
        "passes": passes + extra_passes,
        "samples": samples + extra_samples,
    }
    if extra_passes:
        block["method_passes"] = {"total": extra_flops, "passes": extra_passes, "samples": extra_samples}
    return block


def flops_ratio(record: dict[str, Any]) -> float | None:
    """The paper's "training FLOPs (x)" of a run record: total training FLOPs / dense full-data run."""
    cost = record.get("cost")
    return None if cost is None else cost["training_flops"]["ratio_to_dense"]
