"""Run a model's sparse layers on the sparse kernels where that is faster (``train.sparse_kernels``).

:class:`SparseKernels` is a trainer callback attached next to the sparsity engine. It gives each
sparse Conv2d/Linear a forward that dispatches per call:

- the sparse kernels (:mod:`spfde_core.ops.sparse_conv`) when the layer is supported (stride 1,
  "same" padding, no bias, CPU tensors, a tileable input size), its current sparsity is at least
  ``train.sparse_kernel_min_sparsity`` and its input is NCHW (``auto``; ``on`` takes any sparsity
  and converts channels_last inputs) and the sparsity method does not need the dense weight
  gradient at this step;
- otherwise the layer's own (masked dense) forward.

Both compute ``conv(x, w * m)`` and a weight gradient that is zero wherever ``m`` is zero after the
engine's masking, so results agree to float tolerance and checkpoints are identical in format.

Methods that read the dense gradient say so with ``needs_dense_gradient(ctx) -> bool`` (RigL at
its update steps, SNFS always): at those steps every layer takes the masked dense path, whose
gradient is dense. The record's ``sparse_kernels`` block lists, per layer, how many forward calls
ran on each path and why a layer never used the kernels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spfde_core.ops import native
from spfde_core.ops.sparse_conv import SparsePlan, build_plan, sparse_conv2d, sparse_linear, unsupported_reason
from spfde_core.sparsity.masks import MASK_BUFFER

log = logging.getLogger("spfde_core.ops")
MAX_WGRAD_SCRATCH_BYTES = 256 * 2**20


class SparseKernelUnavailable(RuntimeError):
    """train.sparse_kernels=on but the kernels cannot run here (the message says why)."""


class SparseLayerKernel:
    """One layer's dispatching forward: the sparse kernels when allowed, else the module's own forward."""

    def __init__(self, name: str, module: nn.Module, min_sparsity: float, require_nchw: bool = False) -> None:
        self.name = name
        self.module = module
        self.min_sparsity = min_sparsity
        self.require_nchw = require_nchw
        """auto mode: channels_last inputs stay on the masked path (converting them costs more than the
        kernels save, measured in benchmarks/sparse_kernels.py)."""
        self.static_reason = unsupported_reason(module)
        self.enabled = True
        """Cleared by SparseKernels for steps where the method needs the dense gradient."""
        self.plan: SparsePlan | None = None
        self._plan_mask: torch.Tensor | None = None
        self.calls = {"sparse": 0, "masked": 0}
        self.last_reason: str | None = None
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
            if self.require_nchw and not x.is_contiguous():
                return "channels_last input (the kernels work on NCHW: set train.channels_last=false)"
        elif x.dim() != 2:
            return f"linear input of {x.dim()} dims (needs (batch, features))"
        if self.sparsity() < self.min_sparsity:
            return f"sparsity {self.sparsity():.3f} < train.sparse_kernel_min_sparsity {self.min_sparsity}"
        scratch = self.current_plan().nnz * 16 * 4 * torch.get_num_threads()
        if scratch > MAX_WGRAD_SCRATCH_BYTES:  # the weight gradient keeps 16 partial sums per weight per thread
            return f"weight-gradient scratch {scratch / 2**20:.0f} MiB > {MAX_WGRAD_SCRATCH_BYTES / 2**20:.0f} MiB"
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":  # the cost meter's shape trace at every start: not a call to count
            return self._dense_forward(x)
        reason = self.reason_not_sparse(x)
        self.last_reason = reason
        if reason is not None:
            self.calls["masked"] += 1
            return self._dense_forward(x)
        self.calls["sparse"] += 1
        plan = self.current_plan()
        if x.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))  # what autocast does for the masked dense layer
        if isinstance(self.module, nn.Linear):
            y = sparse_linear(x, self.module.weight, plan)
            return y + self.module.bias.to(y.dtype) if self.module.bias is not None else y
        return sparse_conv2d(x, self.module.weight, plan)


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
                SparseLayerKernel(layer.name, layer.module, self.min_sparsity, require_nchw=self.mode == "auto")
                for layer in engine.masks
            ]
            self.groups.append((engine, kernels))
            self.layers += kernels
        for kernel in self.layers:  # a resumed run continues the counts the record reports
            if kernel.name in self._restored:
                kernel.calls, kernel.last_reason = dict(self._restored[kernel.name][0]), self._restored[kernel.name][1]
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
        return {k.name: (dict(k.calls), k.last_reason) for k in self.layers}

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
                    }
                    for k in self.layers
                ],
            }
        }


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
