"""The network as a list of counted ops, recorded once from one forward pass on the meta device.

``profile_model(model, input_shape)`` runs the model's forward on meta tensors (nothing is computed,
no memory is used, the live weights are untouched) under a ``TorchFunctionMode`` that records every
op the cost model counts, with its per-sample input/output sizes, its freezable block and which
earlier values it reads. Everything after that is analytic (``flops.py``, ``memory.py``).

Counted ops (``kind``) and what is recorded:

- ``conv`` / ``linear``: weight numel, output positions per sample (``Hout*Wout``; 1 for a linear on
  (B, features)), bias numel; the dense forward MACs per sample are ``weight_numel * positions``;
- ``bn``: batch norm (per-sample elements, channels);
- ``relu``, ``add`` (two activations added: the residual join), ``maxpool``, ``avgpool`` (also the
  adaptive one): per-sample input/output elements and the pooling window;
- ``other``: any other function combining two or more activations (kept so the gradient-flow
  analysis stays exact; never counted). Single-input reshapes (flatten, view) are aliases.

The graph is recorded as value ids: value 0 is the network input, op ``i`` produces value ``i + 1``.
An in-place op (``nn.ReLU(inplace=True)``) produces a new value, like an out-of-place one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

COUNTED_KINDS = ("conv", "linear", "bn", "relu", "add", "maxpool", "avgpool")
WEIGHT_KINDS = ("conv", "linear")

_FUNCS = {
    "conv2d": "conv",
    "conv1d": "conv",
    "conv3d": "conv",
    "linear": "linear",
    "batch_norm": "bn",
    "relu": "relu",
    "relu_": "relu",
    "add": "add",
    "add_": "add",
    "__add__": "add",
    "__iadd__": "add",
    "__radd__": "add",
    "max_pool2d": "maxpool",
    "_max_pool2d": "maxpool",
    "max_pool2d_with_indices": "maxpool",
    "avg_pool2d": "avgpool",
    "adaptive_avg_pool2d": "avgpool",
}


@dataclass(frozen=True)
class OpInfo:
    """One counted op of the network, per sample (batch dimension divided out)."""

    index: int
    name: str
    """Module name for conv/linear/bn/pool modules (``layer1.0.conv1``, the ``PrunableLayer`` name);
    functional ops get the enclosing module's name plus the kind, e.g. ``layer1.0.add``."""
    kind: str
    block: int
    """Index of the freezable block holding the op (``model.blocks``)."""
    module: str | None
    """Name of the module owning the weight (conv/linear/bn), else None."""
    inputs: tuple[int, ...]
    """Value ids read (0 = network input); only activations, never weights or buffers."""
    in_numel: int
    """Elements of the (first) activation input, per sample."""
    out_numel: int
    """Elements of the output, per sample."""
    weight_numel: int = 0
    """conv/linear: elements of ``weight``; bn: channels (one gamma, one beta each)."""
    bias_numel: int = 0
    positions: int = 1
    """conv/linear: output positions per sample each weight is used at (forward MACs = weights x positions)."""
    window: int = 1
    """maxpool/avgpool: elements per pooling window."""

    @property
    def output(self) -> int:
        return self.index + 1

    def dense_macs(self) -> int:
        """Forward multiply-accumulates per sample of a conv/linear at full density."""
        return self.weight_numel * self.positions


@dataclass
class ModelProfile:
    """The counted ops of a model for one input shape, plus the value graph between them."""

    input_shape: tuple[int, ...]
    """Per-sample input shape, e.g. (3, 32, 32)."""
    ops: list[OpInfo]
    num_blocks: int
    block_names: list[str]
    consumers: dict[int, list[int]] = field(default_factory=dict)
    """value id -> indices of the ops reading it."""
    _flow: dict[int, tuple[list[bool], list[bool], dict[int, bool]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def input_numel(self) -> int:
        return math.prod(self.input_shape)

    def weight_ops(self) -> list[OpInfo]:
        return [op for op in self.ops if op.kind in WEIGHT_KINDS]

    def op(self, name: str) -> OpInfo:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def grad_flow(self, frozen_blocks: int) -> tuple[list[bool], list[bool], dict[int, bool]]:
        """Which ops compute weight and input gradients with the first ``frozen_blocks`` blocks frozen.

        Returns ``(trainable, needs_input_grad, value_requires_grad)``: an op is trainable when it
        owns parameters (conv/linear/bn) outside the frozen prefix; it needs its input gradient
        when one of its inputs depends on a trainable parameter; a value requires a gradient when
        its producer is trainable or needs its input gradient. The network input never does, so the
        first layer never computes an input gradient, nor does anything in front of the first
        trainable layer (autograd skips exactly the same work).
        """
        cached = self._flow.get(frozen_blocks)
        if cached is not None:
            return cached
        requires = {0: False}
        trainable: list[bool] = []
        needs_ig: list[bool] = []
        for op in self.ops:
            t = op.kind in ("conv", "linear", "bn") and op.block >= frozen_blocks
            ig = any(requires.get(v, False) for v in op.inputs)
            trainable.append(t)
            needs_ig.append(ig)
            requires[op.output] = t or ig
        self._flow[frozen_blocks] = (trainable, needs_ig, requires)
        return self._flow[frozen_blocks]


class _Recorder(TorchFunctionMode):
    """Records counted ops while the forward runs on meta tensors."""

    def __init__(self, module_names: dict[int, tuple[str, int]]) -> None:
        super().__init__()
        self.module_names = module_names
        self.stack: list[tuple[str, int]] = []
        self.values: dict[int, int] = {}  # id(tensor) -> value id
        self.keep: list[torch.Tensor] = []  # keeps recorded tensors alive so ids stay unique
        self.ops: list[OpInfo] = []
        self.used_names: dict[str, int] = {}
        self.batch = 1

    def track(self, tensor: torch.Tensor, value: int) -> None:
        self.values[id(tensor)] = value
        self.keep.append(tensor)

    def _name(self, base: str, kind: str) -> str:
        # Functional ops are named after their module plus the kind ("layer1.0.add"), unless the
        # module is the op itself (an nn.ReLU named "stem.relu").
        functional = kind in ("add", "relu", "other") and not base.rsplit(".", 1)[-1].startswith(kind)
        name = f"{base}.{kind}" if functional else base
        count = self.used_names.get(name, 0)
        self.used_names[name] = count + 1
        return name if count == 0 else f"{name}#{count + 1}"

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        inputs = [self.values[id(a)] for a in flat if id(a) in self.values]
        if not inputs or not self.stack:
            return out
        outputs = out if isinstance(out, tuple) else (out,)
        result = next((o for o in outputs if isinstance(o, torch.Tensor)), None)
        if result is None:
            return out
        kind = _FUNCS.get(getattr(func, "__name__", ""))
        if kind == "add" and len(inputs) < 2:
            kind = None  # e.g. x + 1: not a residual join
        if kind is None:
            if len(set(inputs)) == 1:  # flatten/view/contiguous/...: the same value
                self.track(result, inputs[0])
                return out
            kind = "other"
        module_name, block = self.stack[-1]
        first = next(a for a in flat if id(a) in self.values)
        in_numel = first.numel() // self.batch
        out_numel = result.numel() // self.batch
        extra: dict[str, int] = {}
        owner = None
        if kind in ("conv", "linear"):
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            owner = module_name
            extra = {
                "weight_numel": weight.numel(),
                "bias_numel": bias.numel() if isinstance(bias, torch.Tensor) else 0,
                "positions": out_numel // weight.shape[0],
            }
        elif kind == "bn":
            owner = module_name
            extra = {"weight_numel": first.shape[1] if first.dim() > 1 else first.numel()}
        elif kind in ("maxpool", "avgpool"):
            extra = {"window": _window(func, args, kwargs, in_numel, out_numel)}
        op = OpInfo(
            index=len(self.ops),
            name=self._name(module_name, kind),
            kind=kind,
            block=block,
            module=owner,
            inputs=tuple(dict.fromkeys(inputs)),
            in_numel=in_numel,
            out_numel=out_numel,
            **extra,
        )
        self.ops.append(op)
        self.track(result, op.output)
        return out


def _window(func: Any, args: tuple, kwargs: dict, in_numel: int, out_numel: int) -> int:
    """Elements per pooling window: kernel_size squared, or in/out for the adaptive pool."""
    name = getattr(func, "__name__", "")
    if name == "adaptive_avg_pool2d":
        return max(in_numel // max(out_numel, 1), 1)
    kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
    if isinstance(kernel, int):
        return kernel * kernel
    return math.prod(kernel)


def canonical_module_names(model: nn.Module) -> dict[int, tuple[str, int]]:
    """id(module) -> (name as ``PrunableLayer`` spells it, block index) for every module of every block."""
    names: dict[int, tuple[str, int]] = {}
    for index, (block_name, block) in enumerate(zip(model.block_names, model.blocks, strict=True)):
        for sub_name, module in block.named_modules():
            names[id(module)] = (f"{block_name}.{sub_name}" if sub_name else block_name, index)
    return names


def profile_model(model: nn.Module, input_shape: tuple[int, ...], batch: int = 2) -> ModelProfile:
    """Record the counted ops of ``model`` (a ``BlockModel``) for per-sample inputs of ``input_shape``.

    Runs one forward in train mode on meta copies of the parameters and buffers (``functional_call``),
    so the live model (its weights, BN statistics, device) is not touched and nothing is computed.
    """
    names = canonical_module_names(model)
    recorder = _Recorder(names)
    recorder.batch = batch
    hooks = []
    for module in model.modules():
        if id(module) in names:

            def pre(mod: nn.Module, _args: Any, name: tuple[str, int] = names[id(module)]) -> None:
                recorder.stack.append(name)

            def post(mod: nn.Module, _args: Any, _out: Any) -> None:
                recorder.stack.pop()

            hooks.append(module.register_forward_pre_hook(pre))
            hooks.append(module.register_forward_hook(post))
    tensors = {k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()}
    tensors.update({k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()})
    x = torch.empty((batch, *input_shape), device="meta")
    recorder.track(x, 0)
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), recorder:
            functional_call(model, tensors, (x,))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    consumers: dict[int, list[int]] = {}
    for op in recorder.ops:
        for value in op.inputs:
            consumers.setdefault(value, []).append(op.index)
    return ModelProfile(
        input_shape=tuple(input_shape),
        ops=recorder.ops,
        num_blocks=len(model.blocks),
        block_names=list(model.block_names),
        consumers=consumers,
    )
