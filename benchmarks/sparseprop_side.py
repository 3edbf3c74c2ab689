"""SparseProp as the public anchor of benchmarks/sparse_kernels.py (issue 19): load it, time it, check it.

SparseProp (Nikdan et al., ICML 2023; PyPI ``sparseprop``, Apache-2.0; an optional extra:
``pip install pybind11 && pip install --no-build-isolation -e '.[sparseprop]'``: its setup.py cannot
build in an isolated environment; docs/sparse_kernels.md has the AVX2 build) is used through its
public modules only (``sparseprop.modules.SparseConv2d``, its sparse format helpers and autograd
function); none of its code is part of spfde_core. What its source (0.1.14) says about the layer:

- ``SparseConv2d(dense_weight, bias, padding, stride, vectorizing_over_on)`` keeps the nonzeros of
  ``dense_weight`` (``!= 0``: the weight must be masked) as ``W_val`` (the trained parameter) with
  indices grouped by output channel, then input channel (int32 / int16 offsets, uint8 tap row and
  column); the weight gradient is ``W_val``'s, so a changing mask means a new module;
- fp32 only, stride 1 or 2 (dilation and groups are not checked: stride-1, groups-1 layers only);
- two kernels per layer, AVX2 intrinsics (8 fp32 lanes): vectorised over the batch (the input is
  permuted to C, H, W, N and the output handed back as a permuted view) or over the output width
  (NCHW input read in place: it must be contiguous). Version 0.1.14's batch-axis forward is wrong
  unless the batch is a multiple of 8 (its scalar tail updates one of the four output columns it
  unrolls): that axis is skipped at such batches (``agreement`` shows the error). Backward
  computes the input and the weight gradient in one fused pass (no split).
  ``sparsify_conv2d_auto`` / ``swap_modules_with_sparse`` time both axes once (fwd + bwd) and keep
  the faster; the network swap keeps a layer dense unless it is at least 80% sparse and measured
  faster;
- threads: OpenMP (``-fopenmp``, links ``libgomp.so.1``); imported after PyTorch it shares
  PyTorch's runtime, so ``torch.set_num_threads`` sets its thread count too (checked at load,
  ``omp_runtimes``); forward splits output channels (batch axis) or (image, output channel) pairs;
- built with ``-march=native -ffast-math``: on an AVX-512 machine the build contains AVX-512 code
  outside the intrinsics, so the AVX2-emulated run (``ATEN_CPU_CAPABILITY=avx2``) loads a separate
  AVX2 build (``SPFDE_SPARSEPROP_AVX2``, default ``~/.cache/spfde-bench/sparseprop-avx2``) or is
  skipped with the reason.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from spfde_core import hardware

AVX2_DIR_ENV = "SPFDE_SPARSEPROP_AVX2"
INSTALL = (
    "pip install pybind11 && pip install --no-build-isolation -e '.[sparseprop]' (its setup.py needs pybind11 "
    "in this environment, not in an isolated build one)"
)
INSTALL_AVX2 = (
    "CXXFLAGS=-mno-avx512f pip install --no-cache-dir --no-build-isolation --no-deps "
    "--target ~/.cache/spfde-bench/sparseprop-avx2 sparseprop"
)
AXES = {"batch": False, "width": True}  # our name -> SparseConv2d's vectorizing_over_on


def avx2_dir() -> Path:
    return Path(os.environ.get(AVX2_DIR_ENV) or Path.home() / ".cache" / "spfde-bench" / "sparseprop-avx2")


def emulating_avx2() -> bool:
    """This process runs the AVX2 class on a CPU that has AVX-512 (ATEN_CPU_CAPABILITY=avx2)."""
    return hardware.cpu_isa().isa_class == "avx2" and "avx512f" in hardware.cpu_flags()


def load() -> tuple[SimpleNamespace | None, dict[str, Any]]:
    """(SparseProp's modules, a status block) or (None, status with the reason it is skipped)."""
    status: dict[str, Any] = {}
    if emulating_avx2():
        where = avx2_dir()
        if not list(where.glob("backend*.so")):
            status["skipped"] = (
                f"AVX2 emulation on an AVX-512 CPU needs an AVX2 build of SparseProp (its default build is "
                f"-march=native) in {where}: {INSTALL_AVX2}"
            )
            return None, status
        sys.path.insert(0, str(where))
        status["build"] = f"AVX2 build (-mno-avx512f) from {where}"
    try:
        import backend  # SparseProp's extension (a top-level module of that name)
        import sparseprop
        from sparseprop.modules import SparseConv2d
        from sparseprop.modules.functions import SparseConvFunction
        from sparseprop.modules.utils import from_sparse_format_conv2d, to_sparse_format_conv2d
    except Exception as error:  # noqa: BLE001 - any import failure is a reason to skip
        status["skipped"] = f"sparseprop cannot be imported ({type(error).__name__}: {error}); install: {INSTALL}"
        return None, status
    status.setdefault("build", "default build (-march=native)")
    status["module"] = str(Path(backend.__file__))
    status["version"] = _version()
    status["omp_runtimes"] = omp_runtimes()
    if len(status["omp_runtimes"]) > 1:
        status["threads_warning"] = "SparseProp loaded a second OpenMP runtime: set OMP_NUM_THREADS for it"
    modules = SimpleNamespace(
        package=sparseprop,
        SparseConv2d=SparseConv2d,
        SparseConvFunction=SparseConvFunction,
        to_sparse=to_sparse_format_conv2d,
        to_dense=from_sparse_format_conv2d,
    )
    return modules, status


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("sparseprop")
    except metadata.PackageNotFoundError:
        return None


def omp_runtimes() -> list[str]:
    """The OpenMP runtimes mapped into this process (one: PyTorch and SparseProp share a thread pool)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted(set(re.findall(r"\S*lib[gi]omp[^\s/]*\.so[^\s/]*", maps)))


def unsupported_reason(module: torch.nn.Module) -> str | None:
    """None where the layer is one SparseProp is compared on: a stride-1, groups-1 Conv2d (its lesson:
    strided and 1x1 convolutions stay dense)."""
    if not isinstance(module, torch.nn.Conv2d):
        return f"{type(module).__name__} (Conv2d layers only here)"
    if module.stride != (1, 1) or module.dilation != (1, 1) or module.groups != 1:
        return f"stride {module.stride}, dilation {module.dilation}, groups {module.groups} (compared at 1, 1, 1)"
    if module.kernel_size[0] != module.kernel_size[1] or module.kernel_size == (1, 1):
        return f"kernel {module.kernel_size} (square, larger than 1x1)"
    if module.padding[0] != module.padding[1]:
        return f"padding {module.padding} is not symmetric"
    return None


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_layer(sp: SimpleNamespace, weight: torch.Tensor, x: torch.Tensor, padding: int, repeats: int) -> dict:
    """Forward and fused backward (input + weight gradient) of ``SparseConv2d`` on the masked fp32
    ``weight`` and NCHW fp32 input ``x``, on each vectorisation axis; ``best_axis`` / ``total_ms``
    the faster (what ``sparsify_conv2d_auto`` picks, here from medians)."""
    out: dict[str, Any] = {}
    for axis, over_width in AXES.items():
        if axis == "batch" and x.shape[0] % 8:
            out[axis] = f"skipped: batch {x.shape[0]} is not a multiple of 8 (wrong forward in 0.1.14)"
            continue
        layer = sp.SparseConv2d(weight, padding=padding, stride=1, vectorizing_over_on=over_width)
        xs = x.detach().float().contiguous().requires_grad_()
        with torch.no_grad():
            dy = torch.ones_like(layer(xs)).contiguous()

        def forward_only(layer=layer, xs=xs) -> None:
            with torch.no_grad():
                layer(xs)

        def full(layer=layer, xs=xs, dy=dy) -> None:
            xs.grad = layer.W_val.grad = None
            layer(xs).backward(dy)

        fwd = median_ms(forward_only, repeats)
        total = median_ms(full, repeats)
        out[axis] = {"forward_ms": fwd, "backward_ms": max(total - fwd, 0.0), "total_ms": total}
    best = min((a for a in AXES if isinstance(out[a], dict)), key=lambda a: out[a]["total_ms"])
    out.update(best_axis=best, total_ms=out[best]["total_ms"])
    return out


def agreement(sp: SimpleNamespace, weight: torch.Tensor, mask: torch.Tensor, x: torch.Tensor, padding: int) -> dict:
    """Max relative error of SparseConv2d vs the masked dense conv (fp64 reference) on each axis:
    output, input gradient, weight gradient (at the active weights, densified)."""
    w = (weight * mask).float()
    xd = x.double().requires_grad_()
    wd = w.double().requires_grad_()
    ref = F.conv2d(xd, wd, padding=padding)
    dy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref.backward(dy)
    ref_dw = wd.grad * mask
    errors: dict[str, Any] = {}
    for axis, over_width in AXES.items():
        layer = sp.SparseConv2d(w, padding=padding, stride=1, vectorizing_over_on=over_width)
        xs = x.detach().float().clone().requires_grad_()
        y = layer(xs)
        y.backward(dy.float().contiguous())
        dw = sp.to_dense(layer.W_val.grad, layer.W_idx, tuple(w.shape))
        errors[axis] = {
            "output": _relative_error(y, ref),
            "input_grad": _relative_error(xs.grad, xd.grad),
            "weight_grad": _relative_error(dw, ref_dw),
            "active": int(layer.W_val.numel()),
        }
    return errors


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


class GatheredSparseConv:
    """A trainer layer's forward on SparseProp's kernels, for the whole-step comparison.

    The layer keeps its dense ``weight`` parameter (the trainer's optimizer, masks and records stay
    as they are): each call gathers the active values from it into SparseProp's ``W_val`` order
    (differentiable: the weight gradient scatters back, zero at inactive positions), the integration
    cost our kernels pay too. The index structure is rebuilt when the mask changes in place.
    """

    def __init__(self, sp: SimpleNamespace, module: torch.nn.Conv2d, mask: torch.Tensor, over_width: bool) -> None:
        self.sp, self.module, self.mask, self.over_width = sp, module, mask, over_width
        self.version: tuple[int, int] | None = None
        self.dense_forward = module.forward
        self.calls = 0

    def _structure(self) -> None:
        version = (id(self.mask), self.mask._version)
        if version == self.version:
            return
        w = self.module.weight
        if w.numel() >= 2**24:
            raise ValueError("GatheredSparseConv numbers weights in float32: at most 2**24 of them")
        numbered = (torch.arange(1, w.numel() + 1, dtype=torch.float32).view(w.shape) * self.mask).contiguous()
        order, self.idx = self.sp.to_sparse(numbered)  # the same (output channel, input channel, tap) order
        self.flat = order.long() - 1
        self.version = version

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4:  # the cost meter's meta trace, anything unexpected
            return self.dense_forward(x)
        self._structure()
        self.calls += 1
        m = self.module
        values = m.weight.reshape(-1)[self.flat]
        over_width = self.over_width or x.shape[0] % 8 != 0  # the batch axis needs a multiple of 8
        return self.sp.SparseConvFunction.apply(
            x.float().contiguous(), values, self.idx, None, m.out_channels, m.kernel_size[0], m.padding[0], 1,
            over_width, over_width,
        )  # fmt: skip
