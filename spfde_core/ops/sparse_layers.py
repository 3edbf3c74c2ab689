"""Run a model's sparse layers on the sparse kernels where that is faster (``train.sparse_kernels``).

:class:`SparseKernels` is a trainer callback attached next to the sparsity engine. It gives each
sparse Conv2d/Linear a forward that dispatches per call:

- the sparse kernels (:mod:`spfde_core.ops.sparse_conv`) when the layer is supported (stride 1,
  "same" padding, no bias, CPU tensors, a tileable input size), the sparsity method does not need
  the dense weight gradient at this step, and: under ``auto``, its current sparsity is at least
  ``train.sparse_kernel_min_sparsity`` (the floor, 0.8 as SparseProp's) and the kernels were
  measured faster than the masked dense layer for this layer and call
  (:mod:`spfde_core.ops.kernel_probe`: per input shape, dtype, autocast, layout and sparsity
  bucket, cached per machine); under ``on``, always;
- otherwise the layer's own (masked dense) forward.

A channels_last input takes the sparse path as NCHW (``.contiguous()``) and its output is converted
back to channels_last; under ``auto`` those conversions are part of what is measured.

Both compute ``conv(x, w * m)`` and a weight gradient that is zero wherever ``m`` is zero after the
engine's masking, so results agree to float tolerance and checkpoints are identical in format.

Methods that read the dense gradient say so with ``needs_dense_gradient(ctx) -> bool`` (RigL at
its update steps, SNFS always): at those steps every layer takes the masked dense path, whose
gradient is dense. The record's ``sparse_kernels`` block lists, per layer, how many forward calls
ran on each path, the last reason for the masked path and (``auto``) every measured decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spfde_core.ops import kernel_probe, native
from spfde_core.ops.kernel_probe import Decision, LayerKey
from spfde_core.ops.sparse_conv import SparsePlan, build_plan, sparse_conv2d, sparse_linear, unsupported_reason
from spfde_core.sparsity.masks import MASK_BUFFER

log = logging.getLogger("spfde_core.ops")
MAX_WGRAD_SCRATCH_BYTES = 256 * 2**20
MAX_DECISIONS = 64
"""Decisions a layer's record keeps (the latest; one per distinct key): a gradual pruning schedule
crosses up to 20 sparsity buckets, each with training, evaluation and last-partial-batch shapes."""


class SparseKernelUnavailable(RuntimeError):
    """train.sparse_kernels=on but the kernels cannot run here (the message says why)."""


def _spconv_target() -> str | None:
    try:
        return native.select_target("spconv").name
    except native.NativeUnavailable:
        return None


class SparseLayerKernel:
    """One layer's dispatching forward: the sparse kernels when allowed, else the module's own forward."""

    def __init__(self, name: str, module: nn.Module, min_sparsity: float, measure: bool = False) -> None:
        self.name = name
        self.module = module
        self.min_sparsity = min_sparsity
        self.measure = measure
        """auto mode: at or above min_sparsity, take the kernels only where measured faster (kernel_probe)."""
        self.static_reason = unsupported_reason(module)
        self.enabled = True
        """Cleared by SparseKernels for steps where the method needs the dense gradient."""
        self.plan: SparsePlan | None = None
        self._plan_mask: torch.Tensor | None = None
        self.calls = {"sparse": 0, "masked": 0}
        self.last_reason: str | None = None
        self.choices: dict[LayerKey, Decision] = {}
        """This process's decisions by key (the cache file is read once per key, not per call)."""
        self.decisions: dict[str, dict[str, Any]] = {}
        """The record's decisions by key text, oldest first, at most MAX_DECISIONS (restored on resume)."""
        self.target = _spconv_target() if measure else None
        self._dense_forward = module.forward
        # Under torch.compile the dispatch runs outside the graph (the native calls cannot be traced).
        module.forward = torch.compiler.disable(self.forward)

    def detach(self) -> None:
        """Give the module its own forward back."""
        self.module.forward = self._dense_forward

    def current_plan(self) -> SparsePlan:
        """The CSR plan of the layer's current mask (rebuilt only after the mask changed in place)."""
        mask = getattr(self.module, MASK_BUFFER)
        if self.plan is None or self._plan_mask is not mask or self.plan.version != (id(mask), mask._version):
            self.plan = build_plan(mask)
            self._plan_mask = mask
        return self.plan

    def sparsity(self) -> float:
        plan = self.current_plan()
        return 1.0 - plan.nnz / self.module.weight.numel()

    def reason_not_sparse(self, x: torch.Tensor) -> str | None:
        """Why this call takes the masked dense path (None: it takes the sparse kernels)."""
        if self.static_reason:
            return self.static_reason
        if not self.enabled:
            return "the sparsity method needs the dense gradient at this step"
        if x.device.type != "cpu":
            return f"input on {x.device.type} (the kernels are CPU only)"
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float64):
            return f"input dtype {x.dtype}"
        if isinstance(self.module, nn.Conv2d):
            if x.dim() != 4:
                return f"input of {x.dim()} dims"
            reason = unsupported_reason(self.module, (x.shape[-2], x.shape[-1]))
            if reason:
                return reason
        elif x.dim() != 2:
            return f"linear input of {x.dim()} dims (needs (batch, features))"
        if self.sparsity() < self.min_sparsity:
            return f"sparsity {self.sparsity():.3f} < train.sparse_kernel_min_sparsity {self.min_sparsity}"
        scratch = self.current_plan().nnz * 16 * 4 * torch.get_num_threads()
        if scratch > MAX_WGRAD_SCRATCH_BYTES:  # the weight gradient keeps 16 partial sums per weight per thread
            return f"weight-gradient scratch {scratch / 2**20:.0f} MiB > {MAX_WGRAD_SCRATCH_BYTES / 2**20:.0f} MiB"
        if self.measure:
            key, decision = self.decide(x)
            if not decision.sparse:
                return decision.reason(key)
        return None

    def decide(self, x: torch.Tensor) -> tuple[LayerKey, Decision]:
        """The measured path for this call's key: from memory, else the cache file, else timed now."""
        key = kernel_probe.layer_key(
            self.module, x, self.sparsity(), self.current_plan().block is not None, self.target
        )
        decision = self.choices.get(key)
        if decision is None:
            weight = self.module.weight

            def probe() -> dict[str, float]:
                log.info("train.sparse_kernels=auto: timing %s both ways for %s", self.name, key.text())
                return kernel_probe.measure(self.masked_path, self.sparse_path, x, weight, key.dx, key.dw)

            decision = kernel_probe.decide(key, probe)
            self.choices[key] = decision
            text = key.text()
            self.decisions.pop(text, None)  # a re-decision (after resume) replaces the entry, at the end
            self.decisions[text] = decision.record(key)
            while len(self.decisions) > MAX_DECISIONS:
                del self.decisions[next(iter(self.decisions))]
            log.debug("sparse kernels: %s (%s): %s", self.name, text, decision.reason(key))
        return key, decision

    def masked_path(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The module's own masked dense computation with ``weight`` in place of its parameter (measuring)."""
        if isinstance(self.module, nn.Linear):
            return F.linear(x, weight, self.module.bias)
        return self.module._conv_forward(x, weight, self.module.bias)

    def sparse_path(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The sparse kernels on ``x``: autocast's cast, and a channels_last input through NCHW and back."""
        plan = self.current_plan()
        if x.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))  # what autocast does for the masked dense layer
        if isinstance(self.module, nn.Linear):
            y = sparse_linear(x, weight, plan)
            return y + self.module.bias.to(y.dtype) if self.module.bias is not None else y
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return sparse_conv2d(x, weight, plan)
        # The kernels read NCHW; the next layers expect the model's layout back.
        return sparse_conv2d(x.contiguous(), weight, plan).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":  # the cost meter's shape trace at every start: not a call to count
            return self._dense_forward(x)
        reason = self.reason_not_sparse(x)
        self.last_reason = reason
        if reason is not None:
            self.calls["masked"] += 1
            return self._dense_forward(x)
        self.calls["sparse"] += 1
        return self.sparse_path(x, self.module.weight)


class SparseKernels:
    """Trainer callback: installs :class:`SparseLayerKernel` on the engine's sparse layers (module doc)."""

    def __init__(self, engines: Sequence[Any], mode: str, min_sparsity: float) -> None:
        self.engines = list(engines)
        self.mode = mode
        self.min_sparsity = 0.0 if mode == "on" else min_sparsity
        self.layers: list[SparseLayerKernel] = []
        self.groups: list[tuple[Any, list[SparseLayerKernel]]] = []  # (engine, its layers' kernels)
        self.unavailable: str | None = None
        self._restored: dict[str, Any] = {}

    def on_train_start(self, state: Any) -> None:
        if self.layers:
            return
        self.unavailable = native.unavailable_reason("spconv")
        if state.device.type != "cpu":
            self.unavailable = f"device {state.device} (the sparse kernels are CPU only)"
        if self.unavailable:
            if self.mode == "on":
                raise SparseKernelUnavailable(f"train.sparse_kernels=on: {self.unavailable}")
            log.info("sparse kernels not used: %s", self.unavailable)
            return
        for engine in self.engines:
            kernels = [
                SparseLayerKernel(layer.name, layer.module, self.min_sparsity, measure=self.mode == "auto")
                for layer in engine.masks
            ]
            self.groups.append((engine, kernels))
            self.layers += kernels
        for kernel in self.layers:  # a resumed run continues the counts and decisions the record reports
            if kernel.name in self._restored:
                saved = self._restored[kernel.name]
                if isinstance(saved, (tuple, list)):  # a checkpoint from before the measured decisions
                    saved = {"calls": saved[0], "last_reason": saved[1]}
                kernel.calls, kernel.last_reason = dict(saved["calls"]), saved["last_reason"]
                kernel.decisions = {text: dict(entry) for text, entry in saved.get("decisions", {}).items()}
        if self.mode == "on":
            unsupported = [f"{k.name} ({k.static_reason})" for k in self.layers if k.static_reason]
            if unsupported:
                log.info("sparse kernels: masked dense path for %s", ", ".join(unsupported))

    def on_batch_start(self, state: Any, batch: Any) -> None:
        for engine, kernels in self.groups:
            needs = getattr(engine.method, "needs_dense_gradient", None)
            dense = bool(needs(engine.ctx)) if needs is not None else False
            for kernel in kernels:
                kernel.enabled = not dense

    def after_step(self, state: Any, step: Any) -> None:
        for kernel in self.layers:  # the dense gradient was only needed for this step's backward
            kernel.enabled = True

    def on_train_end(self, state: Any) -> None:
        for kernel in self.layers:
            kernel.detach()

    def state_dict(self) -> dict[str, Any]:
        """Per layer: call counts, last masked reason and the record's decisions (the in-memory choices are
        not saved: a resumed process decides again per key, from the cache file on the same machine)."""
        return {
            k.name: {
                "calls": dict(k.calls),
                "last_reason": k.last_reason,
                "decisions": {text: dict(entry) for text, entry in k.decisions.items()},
            }
            for k in self.layers
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state  # the kernels are installed in on_train_start, after the checkpoint is loaded

    def record(self, state: Any, run_dir: Any) -> dict[str, Any]:
        return {
            "sparse_kernels": {
                "mode": self.mode,
                "min_sparsity": self.min_sparsity,
                "unavailable": self.unavailable,
                "layers": [
                    {
                        "name": k.name,
                        "sparse_calls": k.calls["sparse"],
                        "masked_calls": k.calls["masked"],
                        "last_masked_reason": k.last_reason,
                        "decisions": list(k.decisions.values()),
                    }
                    for k in self.layers
                ],
            }
        }


def install_for_layout_probe(
    model: Any, targets: dict[str, float], min_sparsity: float, scheme: Any = None, seed: int = 0
) -> list[SparseLayerKernel]:
    """Make ``model`` look like a sparse run to the layout probe (spfde_core.layout_probe).

    ``model`` is a zoo model (``prunable_layers()``). Each layer of ``targets`` (name -> sparsity, as
    the run's distribution gives them) at or above ``min_sparsity`` gets a random mask at its sparsity
    (of the run's ``scheme``, e.g. 4x1 blocks, which take the block kernels; unstructured without one),
    its weights masked, and the sparse kernels as its forward, unmeasured (as under ``on``); layers below
    the floor stay dense, which costs what their masked dense path costs. The kernels stay installed
    for the model's lifetime.
    """
    modules = {layer.name: layer.module for layer in model.prunable_layers()}  # names as the distributions give
    generator = torch.Generator().manual_seed(seed)
    kernels = []
    for name, sparsity in targets.items():
        if sparsity < min_sparsity:
            continue
        module = modules[name]
        if scheme is not None:
            mask = scheme.grow(torch.zeros_like(module.weight, dtype=torch.bool), sparsity, None, generator)
        else:
            numel = module.weight.numel()
            mask = torch.zeros(numel, dtype=torch.bool)
            mask[torch.randperm(numel, generator=generator)[: round((1 - sparsity) * numel)]] = True
            mask = mask.view_as(module.weight)
        module.register_buffer(MASK_BUFFER, mask.to(module.weight.device))
        with torch.no_grad():
            module.weight.mul_(getattr(module, MASK_BUFFER))
        kernels.append(SparseLayerKernel(name, module, min_sparsity))
    return kernels


def attach_sparse_kernels(methods: Sequence[Any], cfg: Any, device: torch.device) -> list[SparseKernels]:
    """The SparseKernels callback for the run's sparsity engines ([] when off or without sparse layers).

    Raises SparseKernelUnavailable for ``train.sparse_kernels=on`` where the kernels cannot run, before
    any training starts.
    """
    from spfde_core.sparsity.engine import SparseTraining

    engines = [m for m in methods if isinstance(m, SparseTraining)]
    if cfg.train.sparse_kernels == "off" or not engines:
        return []
    if cfg.train.sparse_kernels == "auto" and cfg.train.compile:
        # The per-call dispatch (mask versions, call counters) would make torch.compile recompile every
        # step until it gives up; auto leaves compiled runs on the masked path (`on` still forces them).
        return []
    if cfg.train.sparse_kernels == "on":
        reason = native.unavailable_reason("spconv") if device.type == "cpu" else f"device {device} (CPU only)"
        if reason:
            raise SparseKernelUnavailable(f"train.sparse_kernels=on: {reason}")
    return [SparseKernels(engines, cfg.train.sparse_kernels, cfg.train.sparse_kernel_min_sparsity)]
