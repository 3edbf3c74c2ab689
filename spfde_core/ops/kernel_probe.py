"""Whether one sparse layer runs faster on the sparse kernels or masked dense: measured, cached per machine.

No sparsity threshold holds across layers and CPUs: on an AMX Xeon the kernels beat the dense layer
of a 128-channel 8x8 convolution at 95% sparsity but lose on a 32-channel 32x32 one
(docs/sparse_kernels.md), and an AVX2 CPU without AMX moves every break-even point. So
``train.sparse_kernels=auto`` times each sparse layer on its real input, both ways, and keeps the
faster, as ``torch.backends.cudnn.benchmark`` picks convolution algorithms and as SparseProp's
``swap_modules_with_sparse`` keeps a layer dense unless it is >= 80% sparse and measured faster
(Nikdan et al., ICML 2023). The answer is cached in ``$SPFDE_CACHE_DIR/sparse_kernels.json``
(default ``~/.cache/spfde``) under a key of the machine and the layer's geometry, so a queue of
runs measures each layer shape once, and a resumed run picks what it started with.

A measurement is 2 paths x (1 warm-up + ``PROBE_STEPS``) forward + backward passes of one layer, on
clones of the input and weight (no ``.grad`` of the model is touched), inside
``torch.random.fork_rng`` so the run's random stream is untouched. Under torchrun every rank
decides alone (no collective inside a forward); both paths agree to float tolerance.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spfde_core import hardware, machine_cache, provenance

log = logging.getLogger(__name__)

PROBE_STEPS = 3
"""Timed passes per path, alternated; the minimum counts (the least disturbed by other load)."""
CACHE_FILE = "sparse_kernels.json"
PATHS = ("masked", "sparse")

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(input, weight) -> output`` of one path."""

_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float64: "fp64"}
_warned: set[tuple[str, str]] = set()


def cache_path() -> Path:
    """``$SPFDE_CACHE_DIR/sparse_kernels.json``, default ``~/.cache/spfde/sparse_kernels.json``."""
    return machine_cache.path(CACHE_FILE)


def machine_key() -> str:
    """What every layer's timings depend on, as the layout probe keys them (spfde_core.train.build.layout_key)."""
    isa = hardware.cpu_isa()
    return " | ".join(
        [
            provenance.cpu_model(),
            f"{isa.isa_class} ({isa.capability}, oneDNN cap {isa.onednn_max_isa})",
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        ]
    )


def _layout(x: torch.Tensor) -> str:
    if x.is_contiguous():
        return "nchw" if x.dim() == 4 else "contiguous"
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


@dataclass(frozen=True)
class LayerKey:
    """What one layer's measurement depends on besides the machine; a new key means a new decision."""

    kind: str
    """conv or linear."""
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    """(N, C, H, W) or (batch, features): the last partial batch is a key of its own."""
    dtype: str
    """The input's dtype: fp32, bf16 or fp64."""
    autocast: str | None
    """The CPU autocast dtype while autocast is on (bf16), else None."""
    layout: str
    """nchw, channels_last (converted to NCHW and back on the sparse path), contiguous (2-D) or strided."""
    sparsity: float
    """Rounded to 2 decimals: a mask update that moves the layer to another bucket decides again."""
    block: bool
    """The mask is MEST's 4x1 blocks (the block kernels run)."""
    target: str | None
    """The loaded spconv build (avx512, avx2)."""
    dx: bool
    """The backward computes the input gradient (grad mode on and the input requires it)."""
    dw: bool
    """The backward computes the weight gradient (grad mode on and the weight requires it)."""
    threads: int

    @property
    def passes(self) -> str:
        """fwd+bwd (training) or fwd (evaluation; an input and a weight that need no gradient)."""
        return "fwd+bwd" if self.dx or self.dw else "fwd"

    def text(self) -> str:
        """The layer's part of the cache key (the machine's part, thread count included, precedes it)."""
        grads = "+".join(g for g, on in (("dx", self.dx), ("dw", self.dw)) if on) or "no grad"
        return (
            f"{self.kind} w{list(self.weight_shape)} x{list(self.input_shape)} {self.dtype} "
            f"autocast {self.autocast} {self.layout} | sparsity {self.sparsity:.2f} "
            f"{'4x1 blocks' if self.block else 'unstructured'} | spconv {self.target} | {grads}"
        )

    def summary(self) -> dict[str, Any]:
        """The record's description of the key (JSON types)."""
        return {
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "autocast": self.autocast,
            "layout": self.layout,
            "sparsity": self.sparsity,
            "passes": self.passes,
        }


def layer_key(module: nn.Module, x: torch.Tensor, sparsity: float, block: bool, target: str | None) -> LayerKey:
    """The key of this call of ``module`` on ``x`` (cheap: built on every eligible call)."""
    grad = torch.is_grad_enabled()
    return LayerKey(
        kind="linear" if isinstance(module, nn.Linear) else "conv",
        weight_shape=tuple(module.weight.shape),
        input_shape=tuple(x.shape),
        dtype=_DTYPES.get(x.dtype, str(x.dtype)),
        autocast=_DTYPES[torch.get_autocast_dtype("cpu")] if torch.is_autocast_enabled("cpu") else None,
        layout=_layout(x),
        sparsity=round(sparsity, 2),
        block=block,
        target=target,
        dx=grad and x.requires_grad,
        dw=grad and module.weight.requires_grad,
        threads=torch.get_num_threads(),
    )


@dataclass(frozen=True)
class Decision:
    """One measured (or cached) choice: the faster path and both times."""

    sparse: bool
    """The sparse kernels were strictly faster (a tie stays masked dense)."""
    masked_s: float
    sparse_s: float
    cached: bool
    """Read from the cache file rather than measured by this process."""

    def reason(self, key: LayerKey) -> str:
        """E.g. ``measured: masked 3.10 ms < sparse 4.51 ms (fwd+bwd, cached)``."""
        times = {"masked": self.masked_s * 1e3, "sparse": self.sparse_s * 1e3}
        first, second = ("sparse", "masked") if self.sparse else ("masked", "sparse")
        rel = "<" if times[first] < times[second] else "="
        source = "cached" if self.cached else "measured now"
        return f"measured: {first} {times[first]:.2f} ms {rel} {second} {times[second]:.2f} ms ({key.passes}, {source})"

    def record(self, key: LayerKey) -> dict[str, Any]:
        """The record's ``decisions`` entry."""
        return {
            **key.summary(),
            "path": "sparse" if self.sparse else "masked",
            "sparse_ms": round(self.sparse_s * 1e3, 3),
            "masked_ms": round(self.masked_s * 1e3, 3),
            "cached": self.cached,
        }


def time_pass(path: str, run: Forward, x: torch.Tensor, weight: torch.Tensor, dx: bool, dw: bool) -> float:
    """Seconds of one forward of ``run``, plus its backward for the gradients asked (``torch.autograd.grad``),
    on fresh clones of ``x`` (same layout) and ``weight``. ``path`` names the path (tests stub this clock)."""
    xs = x.detach().clone().requires_grad_(dx)
    ws = weight.detach().clone().requires_grad_(dw)  # fresh: autocast's cast cache must not carry over
    start = time.perf_counter()
    y = run(xs, ws)
    seconds = time.perf_counter() - start
    wrt = [t for t, need in ((xs, dx), (ws, dw)) if need]
    if wrt:
        dy = torch.ones_like(y)  # the same layout as the output, as the next layer's gradient arrives; no RNG
        start = time.perf_counter()
        torch.autograd.grad(y, wrt, dy)
        seconds += time.perf_counter() - start
    return seconds


def measure(
    masked: Forward, sparse: Forward, x: torch.Tensor, weight: torch.Tensor, dx: bool, dw: bool
) -> dict[str, float]:
    """Seconds per pass of each path: 1 warm-up each, then the minimum of ``PROBE_STEPS``, alternated."""
    runs = {"masked": masked, "sparse": sparse}
    with torch.random.fork_rng(devices=[]), torch.set_grad_enabled(dx or dw):
        for path, run in runs.items():  # warm-up: oneDNN builds its primitives, the kernels their scratch
            time_pass(path, run, x, weight, dx, dw)
        times: dict[str, list[float]] = {path: [] for path in runs}
        for _ in range(PROBE_STEPS):  # alternated, so that a burst of other load hits both paths
            for path, run in runs.items():
                times[path].append(time_pass(path, run, x, weight, dx, dw))
    return {path: min(t) for path, t in times.items()}


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(p), (int, float)) and math.isfinite(entry[p]) and entry[p] >= 0 for p in PATHS
    )


def decide(key: LayerKey, probe: Callable[[], dict[str, float]]) -> Decision:
    """The decision for ``key`` on this machine: from the cache, else from ``probe()`` (then cached)."""
    full_key = f"{machine_key()} | {key.text()}"
    entry, cached = machine_cache.lookup_or_measure(cache_path(), full_key, _valid, probe, "sparse-kernel")
    return Decision(entry["sparse"] < entry["masked"], float(entry["masked"]), float(entry["sparse"]), cached)
