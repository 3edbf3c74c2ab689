"""Analytic per-sample training FLOPs from a ``ModelProfile``, the live densities and the frozen prefix.

Units are never mixed: a ``Split`` carries its unit (``"FLOPs"`` or ``"MACs"``) and adding splits of
different units raises. One multiply or one add is one FLOP; a multiply-accumulate (MAC) is 2 FLOPs.

Per op and per sample (``a`` = active weights, ``P`` = output positions, ``E`` = output elements;
``t`` = the op owns trainable parameters, ``g`` = its input gradient is needed, see
``ModelProfile.grad_flow``):

========  ===========================  ===================================  ======================
op        forward                      input gradient (if g)                weight gradient (if t)
========  ===========================  ===================================  ======================
conv      2 a P (+ E bias adds)        2 a P (transposed conv, sparse W)    2 a P (+ E for a bias)
linear    2 a P (+ E bias adds)        2 a P                                2 a P (+ E for a bias)
bn        train 5 E, eval 2 E          4 E (7 E if its weights are frozen)  3 E
relu      E                            E
add       E                            0 (the gradient passes through)
maxpool   E (k*k - 1)                  E (route to the argmax)
avgpool   E k*k                        input elements (dy / k*k)
========  ===========================  ===================================  ======================

plus, for every activation read by n >= 2 ops that send gradients back (a residual fork),
``(n - 1) x`` its elements of gradient accumulation, charged to its producer's input-gradient term.
BN forward (train): batch statistics 3 E (sum x, sum x^2), normalise-and-affine 2 E with per-channel
scale/shift folded; BN backward: dgamma = sum dy*xhat (2 E) and dbeta = sum dy (E) are the weight
gradient; dx = s (dy - mean dy - xhat mean(dy xhat)) costs 4 E more (7 E when dgamma/dbeta are not
needed but dx is). Per-channel O(C) terms, the loss, the optimizer update and reshapes are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spfde_core.cost.layers import ModelProfile, OpInfo

BN_FORWARD_TRAIN = 5
BN_FORWARD_EVAL = 2
BN_INPUT_GRAD = 4
BN_WEIGHT_GRAD = 3


@dataclass(frozen=True)
class Split:
    """Work split into forward, input-gradient and weight-gradient terms, in one labelled unit."""

    forward: int = 0
    input_grad: int = 0
    weight_grad: int = 0
    unit: str = "FLOPs"

    @property
    def backward(self) -> int:
        return self.input_grad + self.weight_grad

    @property
    def total(self) -> int:
        return self.forward + self.input_grad + self.weight_grad

    def __add__(self, other: Split) -> Split:
        if not isinstance(other, Split):
            return NotImplemented
        if other.unit != self.unit:
            raise ValueError(f"cannot add {other.unit} to {self.unit}")
        return Split(
            self.forward + other.forward,
            self.input_grad + other.input_grad,
            self.weight_grad + other.weight_grad,
            self.unit,
        )

    def scale(self, n: int) -> Split:
        return Split(self.forward * n, self.input_grad * n, self.weight_grad * n, self.unit)

    def to_flops(self) -> Split:
        """MACs -> FLOPs (x 2); FLOPs unchanged."""
        return self if self.unit == "FLOPs" else Split(*(2 * v for v in self.as_tuple()), unit="FLOPs")

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.forward, self.input_grad, self.weight_grad)

    def as_dict(self) -> dict[str, int | str]:
        return {
            "unit": self.unit,
            "forward": self.forward,
            "input_grad": self.input_grad,
            "weight_grad": self.weight_grad,
            "total": self.total,
        }


def total(splits: Iterable[Split], unit: str = "FLOPs") -> Split:
    out = Split(unit=unit)
    for split in splits:
        out = out + split
    return out


def _active(op: OpInfo, active: Mapping[str, int] | None) -> int:
    if active is None or op.module is None:
        return op.weight_numel
    return active.get(op.module, op.weight_numel)


def op_macs(
    profile: ModelProfile,
    active: Mapping[str, int] | None = None,
    frozen_blocks: int = 0,
    dense_weight_grad: bool | set[str] = False,
) -> list[Split]:
    """Per op and per sample, the conv/linear multiply-accumulates (other ops: zero), in MACs."""
    trainable, needs_ig, _ = profile.grad_flow(frozen_blocks)
    out = []
    for op in profile.ops:
        if op.kind not in ("conv", "linear"):
            out.append(Split(unit="MACs"))
            continue
        macs = _active(op, active) * op.positions
        dense_wg = dense_weight_grad is True or (isinstance(dense_weight_grad, set) and op.module in dense_weight_grad)
        wg = op.dense_macs() if dense_wg else macs
        out.append(Split(macs, macs if needs_ig[op.index] else 0, wg if trainable[op.index] else 0, "MACs"))
    return out


def op_flops(
    profile: ModelProfile,
    active: Mapping[str, int] | None = None,
    frozen_blocks: int = 0,
    mode: str = "train",
    dense_weight_grad: bool | set[str] = False,
) -> list[Split]:
    """Per op and per sample training FLOPs (``mode="eval"``: forward only, BN with running stats).

    Args:
        profile: the recorded ops.
        active: active weights per sparse layer (module name); missing layers are dense; None = all dense.
        frozen_blocks: leading blocks run under no_grad (``model.num_frozen_blocks``).
        mode: ``train`` (forward + backward) or ``eval`` (inference forward).
        dense_weight_grad: True, or a set of layer names, whose weight gradient is computed dense
            (RigL's update steps); otherwise the weight gradient is as sparse as the weights.
    """
    macs = op_macs(profile, active, frozen_blocks, dense_weight_grad)
    if mode == "eval":
        return [Split(_forward(op, m, "eval"), 0, 0) for op, m in zip(profile.ops, macs, strict=True)]
    if mode != "train":
        raise ValueError(f"mode: expected train or eval, got {mode!r}")
    trainable, needs_ig, requires = profile.grad_flow(frozen_blocks)
    out = []
    for op, m in zip(profile.ops, macs, strict=True):
        t, g = trainable[op.index], needs_ig[op.index]
        fwd = _forward(op, m, "train")
        ig = wg = 0
        if op.kind in ("conv", "linear"):
            ig = 2 * m.input_grad
            wg = 2 * m.weight_grad + (op.out_numel if op.bias_numel and t else 0)
        elif op.kind == "bn":
            wg = BN_WEIGHT_GRAD * op.out_numel if t else 0
            ig = (BN_INPUT_GRAD + (0 if t else BN_WEIGHT_GRAD)) * op.out_numel if g else 0
        elif op.kind == "relu":
            ig = op.out_numel if g else 0
        elif op.kind == "maxpool":
            ig = op.out_numel if g else 0
        elif op.kind == "avgpool":
            ig = op.in_numel if g else 0
        # Gradient accumulation where this op's output is read by several ops sending gradients back.
        if requires[op.output]:
            senders = sum(1 for c in profile.consumers.get(op.output, []) if needs_ig[c])
            ig += max(senders - 1, 0) * op.out_numel
        out.append(Split(fwd, ig, wg))
    return out


def _forward(op: OpInfo, macs: Split, mode: str) -> int:
    if op.kind in ("conv", "linear"):
        return 2 * macs.forward + (op.out_numel if op.bias_numel else 0)
    if op.kind == "bn":
        return (BN_FORWARD_TRAIN if mode == "train" else BN_FORWARD_EVAL) * op.out_numel
    if op.kind in ("relu", "add"):
        return op.out_numel
    if op.kind == "maxpool":
        return op.out_numel * (op.window - 1)
    if op.kind == "avgpool":
        return op.out_numel * op.window
    return 0


def sample_flops(
    profile: ModelProfile,
    active: Mapping[str, int] | None = None,
    frozen_blocks: int = 0,
    mode: str = "train",
    dense_weight_grad: bool | set[str] = False,
) -> Split:
    """Per-sample FLOPs of a training step (or an inference forward), summed over the ops."""
    return total(op_flops(profile, active, frozen_blocks, mode, dense_weight_grad))


def sample_macs(
    profile: ModelProfile,
    active: Mapping[str, int] | None = None,
    frozen_blocks: int = 0,
    dense_weight_grad: bool | set[str] = False,
) -> Split:
    """Per-sample conv/linear MACs of a training step (forward, input gradient, weight gradient)."""
    return total(op_macs(profile, active, frozen_blocks, dense_weight_grad), unit="MACs")


def dense_weight_grad_extra(
    profile: ModelProfile, active: Mapping[str, int] | None, frozen_blocks: int, layers: set[str]
) -> int:
    """Per-sample FLOPs a dense weight gradient of ``layers`` adds over the sparse one (RigL updates)."""
    dense = op_flops(profile, active, frozen_blocks, dense_weight_grad=layers)
    sparse = op_flops(profile, active, frozen_blocks)
    return sum(d.weight_grad - s.weight_grad for d, s in zip(dense, sparse, strict=True))


def scoring_flops(profile: ModelProfile, active: Mapping[str, int] | None, passes: Mapping[str, int]) -> int:
    """Per-sample FLOPs of a scoring pass: ``forward`` forwards, ``backward`` backwards, ``hvp`` HVPs.

    Forwards are training-mode forwards at ``active``; a backward computes every input gradient
    and every weight gradient with nothing frozen; one Hessian-vector product (double backward) is
    charged as one more forward plus one more backward.
    """
    split = sample_flops(profile, active, 0)
    hvp = int(passes.get("hvp", 0))
    forwards = int(passes.get("forward", 0)) + hvp
    backwards = int(passes.get("backward", 0)) + hvp
    return forwards * split.forward + backwards * split.backward


def prefix_forward(
    profile: ModelProfile, active: Mapping[str, int] | None, blocks: int, mode: str = "train"
) -> tuple[int, int]:
    """Per-sample forward work of blocks ``[0, blocks)``: (FLOPs, conv/linear MACs).

    What a step on cached maps no longer does (``mode="train"``, as the step charged it) or what
    building the cache costs (``mode="eval"``: frozen blocks run in eval mode).
    """
    flops = op_flops(profile, active, blocks, mode=mode)
    macs = op_macs(profile, active, blocks)
    inside = [op.block < blocks for op in profile.ops]
    f = sum(s.forward for s, keep in zip(flops, inside, strict=True) if keep)
    m = sum(s.forward for s, keep in zip(macs, inside, strict=True) if keep)
    return f, m
