"""The per-step masked SGD update as one fused operation over all parameters (issue 7, docs/fused_update.md).

A sparse step is: mask the gradients (``g *= m``), ``torch.optim.SGD``'s update (weight decay,
momentum, Nesterov), mask the weights (``w *= m``) and, with ``reset_momentum``, the momentum buffers.
:class:`MaskedSGD` does all of it inside ``step()`` (the sparsity engine requires it), with one of
three implementations of the element rule written once in :func:`eager_masked_update`:

- ``eager``: that function, PyTorch ops per parameter (the reference; bit-identical to
  ``torch.optim.SGD``'s single-tensor step between the maskings);
- ``fused_cpu``: one OpenMP loop over every parameter's elements (``csrc/fused_sgd.cpp``, built by
  :mod:`spfde_core.ops.native`), reading w, g, buf, m once and writing w, buf once;
- ``triton``: the same element rule as a multi-tensor Triton kernel for CUDA tensors
  (:mod:`spfde_core.ops.triton_update`).

The state dict is ``torch.optim.SGD``'s (``momentum_buffer`` per parameter, the same group keys),
so checkpoints load either way. A parameter without a gradient (frozen block) is skipped exactly as
``torch.optim.SGD`` skips it. Fused kernels work on raw storage, so a parameter is fused only when
weight, gradient, buffer and mask share one non-overlapping dense layout (contiguous or
channels_last) and are float32 (mask: bool); any other parameter takes the eager ops in the same step.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spfde_core.ops import native

IMPLS = ("eager", "fused_cpu", "triton")
MASK_BUFFER = "weight_mask"  # spfde_core.sparsity.masks.MASK_BUFFER (not imported: ops must not import sparsity)

# Flags of csrc/fused_sgd.cpp (and of the Triton kernel).
F_MASK, F_MOMENTUM, F_FIRST, F_NESTEROV, F_MASK_BUF, F_DECAY = 1, 2, 4, 8, 16, 32


class FusedUpdateUnavailable(RuntimeError):
    """The requested fused implementation cannot run here; the message says why."""


def same_dense_layout(reference: torch.Tensor, *others: torch.Tensor) -> bool:
    """True when ``reference`` is non-overlapping and dense and every other tensor has its shape and
    strides (size-1 dims ignored), so one element-wise loop over the raw storages is valid."""
    sizes = reference.shape
    dims = [d for d in range(reference.dim()) if sizes[d] != 1]
    strides = reference.stride()
    expected = 1
    for d in sorted(dims, key=lambda d: strides[d]):
        if strides[d] != expected:
            return False
        expected *= sizes[d]
    for other in others:
        if other.shape != sizes or any(other.stride(d) != strides[d] for d in dims):
            return False
    return True


# ---- availability and selection ------------------------------------------------------------------
AUTO_CUDA_REASON = (
    "update_impl=auto runs eager on CUDA: the Triton kernel has not yet passed tests/ops/test_triton_gpu.py on a "
    "GPU (pytest -m gpu); train.update_impl=triton opts in"
)


def triton_unavailable_reason(device: torch.device) -> str | None:
    """None when the Triton kernel can run on ``device``'s tensors; else why not."""
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if device.type != "cuda" and not interpret:
        return f"Triton kernel needs CUDA tensors (parameters are on {device.type}; TRITON_INTERPRET=1 runs it on CPU)"
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return f"triton is not importable ({error})"
    return None


def fused_cpu_unavailable_reason(device: torch.device) -> str | None:
    """None when the native fused CPU kernel can run on ``device``'s tensors; else why not."""
    if device.type != "cpu":
        return f"the native kernel runs on CPU tensors (parameters are on {device.type})"
    return native.unavailable_reason("fused_sgd")


def select_impl(requested: str, device: torch.device) -> tuple[str, str | None]:
    """(implementation, reason fused was not used or None) for ``train.update_impl`` on ``device``.

    ``auto``: on CPU the native kernel where it can run, else ``eager`` with the reason; on CUDA
    ``eager`` (``AUTO_CUDA_REASON``) until the Triton kernel has passed the ``gpu`` test on a GPU.
    ``fused``: the fused implementation for the device (CPU: native kernel; CUDA: Triton), but raise
    :class:`FusedUpdateUnavailable` instead of falling back. ``eager`` and the implementation names
    themselves are taken as given (a named implementation that cannot run raises).
    """
    if requested == "eager":
        return "eager", "train.update_impl=eager"
    if requested == "auto" and device.type == "cuda":
        return "eager", AUTO_CUDA_REASON
    if requested in ("auto", "fused"):
        impl = "triton" if device.type == "cuda" else "fused_cpu"
    elif requested in IMPLS:
        impl = requested
    else:
        raise ValueError(f"update_impl: expected auto, fused, eager, fused_cpu or triton, got {requested!r}")
    reason = triton_unavailable_reason(device) if impl == "triton" else fused_cpu_unavailable_reason(device)
    if reason is None:
        return impl, None
    if requested == "auto":
        return "eager", reason
    raise FusedUpdateUnavailable(f"update_impl={requested}: {impl} cannot run here: {reason}")


# ---- the native CPU kernel -----------------------------------------------------------------------
_PTRS = ctypes.POINTER(ctypes.c_void_p)


def _native_kernel() -> Any:
    lib = native.load("fused_sgd")
    fn = lib.spfde_fused_masked_sgd_f32
    if fn.argtypes is None:
        fn.argtypes = [ctypes.c_int64, *[ctypes.c_void_p] * 10, ctypes.c_int32]
        fn.restype = ctypes.c_int
    return fn


@dataclass
class _Batch:
    """One step's fusable tensors, in the kernel's argument layout."""

    weights: list[int]
    grads: list[int]
    bufs: list[int]
    masks: list[int]
    numel: list[int]
    lr: list[float]
    wd: list[float]
    momentum: list[float]
    dampening: list[float]
    flags: list[int]

    @classmethod
    def empty(cls) -> _Batch:
        return cls([], [], [], [], [], [], [], [], [], [])

    def add(self, w: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None, m: torch.Tensor | None, **k: Any) -> None:
        self.weights.append(w.data_ptr())
        self.grads.append(g.data_ptr())
        self.bufs.append(buf.data_ptr() if buf is not None else 0)
        self.masks.append(m.data_ptr() if m is not None else 0)
        self.numel.append(w.numel())
        self.lr.append(k["lr"])
        self.wd.append(k["wd"])
        self.momentum.append(k["momentum"])
        self.dampening.append(k["dampening"])
        self.flags.append(k["flags"])

    def __len__(self) -> int:
        return len(self.weights)


def _run_native(batch: _Batch, static: list[Any] | None = None) -> list[Any]:
    """One call of ``spfde_fused_masked_sgd_f32`` over the batch (the threads PyTorch uses).

    ``static``: the ctypes arrays of the step-invariant arguments (weights, buffers, masks, sizes,
    weight decay, momentum, dampening, flags) from an earlier call with the same plan; returned
    (built when not given) so the caller can cache them.
    """
    n = len(batch)
    ptrs, floats = ctypes.c_void_p * n, ctypes.c_float * n
    if static is None:
        static = [
            ptrs(*batch.weights),
            ptrs(*batch.bufs),
            ptrs(*batch.masks),
            (ctypes.c_int64 * n)(*batch.numel),
            floats(*batch.wd),
            floats(*batch.momentum),
            floats(*batch.dampening),
            (ctypes.c_int32 * n)(*batch.flags),
        ]
    w, bufs, masks, numel, wd, mu, damp, flags = static
    rc = _native_kernel()(
        n, w, ptrs(*batch.grads), bufs, masks, numel, floats(*batch.lr), wd, mu, damp, flags, torch.get_num_threads()
    )
    if rc != 0:
        raise RuntimeError(f"spfde_fused_masked_sgd_f32 rejected its arguments (rc={rc})")
    return static


# ---- the eager reference -------------------------------------------------------------------------
@torch.no_grad()
def eager_masked_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor | None,
    mask: torch.Tensor | None,
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    mask_momentum: bool,
) -> torch.Tensor | None:
    """The masked SGD step of one parameter: the element rule every implementation is tested against.

    Per element, with mask m (1 where ``mask`` is None), learning rate lr, weight decay wd, momentum
    mu, dampening tau (``torch.optim.SGD``'s single-tensor rule between the two maskings)::

        g   <- g * m
        d   <- g + wd * w                      (wd != 0)
        buf <- d                               (mu != 0, first step)
        buf <- mu * buf + (1 - tau) * d        (mu != 0, later steps)
        d   <- d + mu * buf  if nesterov else buf   (mu != 0)
        w   <- (w - lr * d) * m
        buf <- buf * m                         (mask_momentum: the engine's reset_momentum)

    ``csrc/fused_sgd.cpp`` (bit for bit) and the Triton kernel (``triton_update.py``) implement this
    rule; ``tests/ops/test_fused_update.py`` and ``test_triton_gpu.py`` hold them to this function.
    Updates ``param`` (and ``buf``) in place, masks ``grad`` in place, returns the momentum buffer
    (new on the first step)."""
    if mask is not None:
        grad.mul_(mask)
    d = grad.add(param, alpha=weight_decay) if weight_decay != 0 else grad
    if momentum != 0:
        if buf is None:
            buf = torch.clone(d).detach()
        else:
            buf.mul_(momentum).add_(d, alpha=1 - dampening)
        d = d.add(buf, alpha=momentum) if nesterov else buf
    param.add_(d, alpha=-lr)
    if mask is not None:
        param.mul_(mask)
        if buf is not None and mask_momentum:
            buf.mul_(mask)
    return buf


# ---- the optimizer -------------------------------------------------------------------------------
class MaskedSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose ``step()`` also does the sparsity engine's gradient, weight and (with
    ``reset_momentum``) momentum masking, eagerly or fused (see the module docstring).

    Masks are registered by the sparsity engine (:meth:`register_masks`); until then every parameter
    is dense (m = 1). ``impl`` is the implementation that runs; ``fallback_reason`` says why a fused
    one was not chosen (None when it was). ``fused_params``/``eager_params`` count, for the last
    step, how many parameters each path updated (a fused implementation falls back to the eager ops
    per parameter whose layout or dtype it cannot take).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        impl: str = "eager",
        fallback_reason: str | None = None,
    ) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl: expected one of {', '.join(IMPLS)}, got {impl!r}")
        super().__init__(
            params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov
        )
        self.impl = impl
        self.fallback_reason = fallback_reason
        self.mask_modules: dict[int, nn.Module] = {}
        self.mask_momentum = False
        self.fused_params = 0
        self.eager_params = 0

    @property
    def applies_masks(self) -> bool:
        """True once masks are registered: the engine then leaves grad/weight/momentum masking to step()."""
        return bool(self.mask_modules)

    def register_masks(self, modules: Mapping[str, nn.Module], mask_momentum: bool) -> None:
        """Apply each module's ``weight_mask`` buffer (looked up at every step, so a mask copied into or
        replaced on the module is seen) to its ``weight``; ``mask_momentum``: the engine's reset_momentum."""
        params = {id(p) for group in self.param_groups for p in group["params"]}
        for name, module in modules.items():
            if id(module.weight) not in params:
                raise ValueError(f"{name}.weight is not a parameter of this optimizer")
            if getattr(module, MASK_BUFFER, None) is None:
                raise ValueError(f"{name} has no {MASK_BUFFER} buffer")
            self.mask_modules[id(module.weight)] = module
        self.mask_momentum = mask_momentum

    def describe(self) -> dict[str, Any]:
        """The run record's ``update`` block: which implementation ran and why fused did not."""
        return {
            "impl": self.impl,
            # the ISA build of the native kernel (avx512 | avx2 | generic; docs/hardware.md)
            **({"native_target": native.loaded_target("fused_sgd")} if self.impl == "fused_cpu" else {}),
            "fused": self.impl != "eager",
            "fallback_reason": self.fallback_reason,
            "masks_in_step": self.applies_masks,
            "fused_params_last_step": self.fused_params,
            "eager_params_last_step": self.eager_params,
        }

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 (SGD's contract)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.impl == "eager":
            self._step_eager()
        else:
            self._step_fused()
        return loss

    def _mask_of(self, p: torch.Tensor) -> torch.Tensor | None:
        module = self.mask_modules.get(id(p))
        return None if module is None else getattr(module, MASK_BUFFER)

    def _step_eager(self) -> None:
        """``eager_masked_update`` on every parameter with a gradient."""
        count = 0
        for group in self.param_groups:
            if group.get("maximize") or group.get("differentiable"):
                raise ValueError("MaskedSGD does not support maximize or differentiable")
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update_eager(p, self._mask_of(p), group)
                count += 1
        self.eager_params, self.fused_params = count, 0

    def _update_eager(self, p: torch.Tensor, mask: torch.Tensor | None, group: dict[str, Any]) -> bool:
        """One parameter through ``eager_masked_update``; True when it created the momentum buffer."""
        buf = self.state[p].get("momentum_buffer") if group["momentum"] != 0 else None
        new = eager_masked_update(
            p, p.grad, buf, mask, lr=float(group["lr"]), weight_decay=group["weight_decay"],
            momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"],
            mask_momentum=self.mask_momentum,
        )  # fmt: skip
        if group["momentum"] != 0 and buf is None:
            self.state[p]["momentum_buffer"] = new
            return True
        return False

    def state_dict(self) -> dict[str, Any]:  # noqa: D102 (SGD's, plus the last step's counts)
        # describe() reports the last step's counts: a run resumed after its last epoch takes no step
        return {**super().state_dict(), "last_step": {"fused": self.fused_params, "eager": self.eager_params}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102 (SGD's; drops the plan)
        state_dict = dict(state_dict)
        last = state_dict.pop("last_step", None)
        super().load_state_dict(state_dict)
        if last is not None:
            self.fused_params, self.eager_params = last["fused"], last["eager"]
        self._plan = None  # the momentum buffers are new tensors

    def add_param_group(self, param_group: dict[str, Any]) -> None:  # noqa: D102 (SGD's; drops the plan)
        super().add_param_group(param_group)
        self._plan = None

    def _step_fused(self) -> None:
        """One fused step. The plan (which parameters are fused, their raw pointers, flags and the
        kernel's step-invariant arguments) is cached and revalidated cheaply every step: the same
        parameters with gradients, the same weight, mask and buffer tensors, and gradients of the
        planned layout; anything else rebuilds it (about 0.5 ms for 100 tensors in Python)."""
        params = [p for group in self.param_groups for p in group["params"]]
        grads = [p.grad for p in params]
        present = tuple(g is not None for g in grads)
        plan = getattr(self, "_plan", None)
        if plan is None or plan["present"] != present or not self._plan_valid(plan):
            plan = self._build_plan(params, present)
        lrs = [float(group["lr"]) for group in self.param_groups]
        batch = plan["batch"]
        batch.grads = [p.grad.data_ptr() for p in plan["params"]]
        batch.lr = [lrs[i] for i in plan["group_of"]]
        for p, mask, _buf, group in plan["eager"]:
            if self._update_eager(p, mask, group):
                plan["first"] = True  # the plan holds the old (missing) buffer: rebuild next step
        if len(batch):
            if self.impl == "fused_cpu":
                plan["static"] = _run_native(batch, plan.get("static"))
            else:
                from spfde_core.ops.triton_update import triton_masked_sgd

                triton_masked_sgd(batch, plan["tensors"])
        self.fused_params, self.eager_params = len(batch), len(plan["eager"])
        # A first step wrote new buffers with the FIRST flag: the next step needs a plan without it.
        self._plan = None if plan["first"] else plan

    def _plan_valid(self, plan: dict[str, Any]) -> bool:
        for p, module, mask, buf, stride in plan["check"]:
            g = p.grad
            if g.dtype != torch.float32 or g.stride() != stride or g.is_sparse:
                return False
            if module is not None and getattr(module, MASK_BUFFER) is not mask:
                return False
            if buf is not None and self.state[p].get("momentum_buffer") is not buf:
                return False
        return all(p.data_ptr() == w for p, w in zip(plan["params"], plan["batch"].weights, strict=True))

    def _build_plan(self, params: list[torch.Tensor], present: tuple[bool, ...]) -> dict[str, Any]:
        """Decide per parameter with a gradient: fused (and its kernel arguments) or eager ops; create
        the momentum buffers of a first step (flagged FIRST: the kernel writes them without reading)."""
        batch = _Batch.empty()
        plan: dict[str, Any] = {"present": present, "batch": batch, "params": [], "group_of": [], "check": []}
        plan.update(eager=[], tensors=[], first=False)
        for index, group in enumerate(self.param_groups):
            if group.get("maximize") or group.get("differentiable"):
                raise ValueError("MaskedSGD's fused step does not support maximize or differentiable")
            wd, mu = float(group["weight_decay"]), float(group["momentum"])
            dampening, nesterov = float(group["dampening"]), bool(group["nesterov"])
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                mask = self._mask_of(p)
                buf = self.state[p].get("momentum_buffer") if mu != 0 else None
                fusable = (
                    p.dtype == torch.float32
                    and g.dtype == torch.float32
                    and not g.is_sparse
                    and (mask is None or mask.dtype == torch.bool)
                    and (buf is None or buf.dtype == torch.float32)
                    and same_dense_layout(p, g, *(t for t in (buf, mask) if t is not None))
                )
                if not fusable:
                    plan["eager"].append((p, mask, buf, group))
                    continue
                flags = (F_MASK if mask is not None else 0) | (F_DECAY if wd != 0 else 0)
                if mu != 0:
                    flags |= F_MOMENTUM | (F_NESTEROV if nesterov else 0)
                    flags |= F_MASK_BUF if self.mask_momentum else 0
                    if buf is None:
                        buf = torch.empty_like(p)  # same layout as p (preserve_format of a dense tensor)
                        self.state[p]["momentum_buffer"] = buf
                        flags |= F_FIRST
                        plan["first"] = True
                batch.add(p, g, buf, mask, lr=0.0, wd=wd, momentum=mu, dampening=dampening, flags=flags)
                plan["params"].append(p)
                plan["group_of"].append(index)
                plan["tensors"].append((p, buf, mask))
                plan["check"].append((p, self.mask_modules.get(id(p)), mask, buf, g.stride()))
        return plan
