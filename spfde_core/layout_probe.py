"""Which memory layout trains a model faster on this machine, measured once and cached (issue 12).

channels_last vs NCHW has no rule that holds across CPUs: on an AVX2 EPYC channels_last trained
``resnet32_w2`` 1.22x faster than NCHW (issue 19's side-by-side with MEST), while the same model under
``ONEDNN_MAX_CPU_ISA=AVX2`` on an AMX Xeon ran 0.82x (results/benchmarks/trainer_throughput.json).
So ``train.channels_last=auto`` on a CPU times a few training steps of the run's own model, at its
batch size (capped at ``PROBE_MAX_BATCH``) and precision, in both layouts, and keeps the faster one,
as ``torch.backends.cudnn.benchmark`` does for convolution algorithms. The answer is cached per
machine in ``$SPFDE_CACHE_DIR/channels_last.json`` (default ``~/.cache/spfde``), so a queue of runs
measures each model once, and a resumed run picks what it started with.

A sparse run that may use the sparse kernels (``train.sparse_kernels`` auto or on, issue 19) is timed
both ways in each layout: the dense model (what the masked dense path costs), and the same model at
the run's per-layer sparsities with the kernels on every layer at or above the floor. The kernels read
NCHW, so in channels_last each of their layers pays two layout conversions: under AVX2 the dense
model alone picked channels_last while the kernels ran 1.4x faster in NCHW (docs/sparse_kernels.md).
Each layout counts with the faster of its two variants (``auto`` then keeps the kernels per layer only
where measured faster); under ``train.sparse_kernels=on`` with its kernel variant (the kernels run
whatever they cost). Dynamic methods are timed at their target sparsity, with random masks.

Measuring takes a few seconds for CIFAR models (2 layouts x (1 warm-up + ``PROBE_STEPS``) forward +
backward passes, twice for a sparse run); it runs inside ``torch.random.fork_rng`` so the run's
random stream is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spfde_core import machine_cache

log = logging.getLogger(__name__)

PROBE_STEPS = 3
"""Timed steps per layout; the minimum counts (the least disturbed by other load)."""
PROBE_MAX_BATCH = 64
"""Largest probe batch: ImageNet ResNet-50 at batch 256 would take minutes a step on a CPU."""
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
KERNELS = "+kernels"
"""Suffix of a layout's entry timed with the sparse kernels installed (``nchw+kernels``)."""


def cache_path() -> Path:
    """``$SPFDE_CACHE_DIR/channels_last.json``, default ``~/.cache/spfde/channels_last.json``."""
    return machine_cache.path("channels_last.json")


def _step_seconds(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> float:
    start = time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    return time.perf_counter() - start


def measure(
    build_model: Callable[[], torch.nn.Module],
    image_size: int,
    num_classes: int,
    batch: int,
    bf16: bool,
    sparsify: Callable[[torch.nn.Module], Any] | None = None,
) -> dict[str, float]:
    """Seconds per forward + backward step in each layout: the minimum of ``PROBE_STEPS``, alternated.

    With ``sparsify`` (installs masks and the sparse kernels on a model, e.g.
    ``spfde_core.ops.sparse_layers.install_for_layout_probe``) each layout is also timed on the kernels,
    as ``<layout>+kernels``.
    """
    batch = min(batch, PROBE_MAX_BATCH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        nets, inputs = {}, {}
        for layout, fmt in LAYOUTS.items():
            nets[layout] = build_model().train().to(memory_format=fmt)
            inputs[layout] = torch.randn(batch, 3, image_size, image_size).to(memory_format=fmt)
            if sparsify is not None:
                nets[layout + KERNELS] = build_model().train().to(memory_format=fmt)
                sparsify(nets[layout + KERNELS])  # after the layout change: masks as the trainer's, in it
                inputs[layout + KERNELS] = inputs[layout]
        labels = torch.randint(0, num_classes, (batch,))
        for name in nets:  # warm-up: oneDNN builds its kernels on the first call
            _step_seconds(nets[name], inputs[name], labels, bf16)
        times: dict[str, list[float]] = {name: [] for name in nets}
        for _ in range(PROBE_STEPS):  # alternate, so that a burst of other load hits every variant
            for name in nets:
                times[name].append(_step_seconds(nets[name], inputs[name], labels, bf16))
    return {name: min(t) for name, t in times.items()}


def cached_choice(key: str, probe: Callable[[], dict[str, float]], kernels_only: bool = False) -> tuple[bool, str]:
    """(channels_last, reason) for ``key``: from the cache, else from ``probe()``, then cached.

    A layout counts with its faster variant where the kernels were timed too (``<layout>+kernels``);
    with ``kernels_only`` (``train.sparse_kernels=on``: the kernels run whatever they cost) with that one.
    """
    path = cache_path()
    valid = lambda e: isinstance(e, dict) and set(LAYOUTS) <= e.keys()  # noqa: E731
    entry, cached = machine_cache.lookup_or_measure(path, key, valid, probe, "layout")
    source = "cached measurement" if cached else "measured now"
    timed = all(layout + KERNELS in entry for layout in LAYOUTS)
    if kernels_only and timed:
        best = {layout: entry[layout + KERNELS] for layout in LAYOUTS}
    else:
        best = {layout: min(entry[layout], entry.get(layout + KERNELS, math.inf)) for layout in LAYOUTS}
    reason = (
        f"{source} on this machine ({path}): a training step takes {best['channels_last'] * 1e3:.0f} ms in "
        f"channels_last, {best['nchw'] * 1e3:.0f} ms in NCHW"
    )
    if timed:
        reason += (
            f"{' with train.sparse_kernels=on' if kernels_only else ''}"
            f" (masked dense {entry['channels_last'] * 1e3:.0f} / {entry['nchw'] * 1e3:.0f} ms, on the sparse "
            f"kernels {entry['channels_last' + KERNELS] * 1e3:.0f} / {entry['nchw' + KERNELS] * 1e3:.0f} ms)"
        )
    return best["channels_last"] < best["nchw"], reason
