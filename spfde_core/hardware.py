"""What this machine computes natively, and the ``auto`` train settings that follow (docs/hardware.md).

Two settings depend on the hardware more than on the experiment:

- ``train.precision=auto``: bf16 autocast only where bf16 is computed natively: a CPU with AMX or
  AVX512-BF16 that PyTorch and oneDNN are allowed to use, or a CUDA device with bf16 support.
  Elsewhere bf16 is emulated (measured on an AVX2-only EPYC: ResNet-20 trains at 23 img/s in bf16
  vs 220 img/s in fp32), so fp32.
- ``train.channels_last=auto``: never for a model with a convolution narrower than
  ``MIN_CHANNELS_LAST_WIDTH`` input channels; otherwise, on a CPU, the layout measured faster for
  this model on this machine (``spfde_core.layout_probe``: no rule held on both CPU classes), and
  channels_last on CUDA. The narrow-width exclusion is for safety: oneDNN's AVX2
  weight-gradient kernel for strided 1x1 convolutions in channels_last hangs (2 threads) or
  segfaults (1 thread) below 8 input channels (quarter-width ResNet-20, the smoke profile), and
  layers that narrow are slower in channels_last anyway.

Explicit settings always win. The CPU's ISA class is read the way PyTorch and oneDNN read it, so
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` on an AMX machine resolves as an AVX2 CPU does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

# The stem convolution sees the 3 image channels in every model; the rule is about the others.
MIN_CHANNELS_LAST_WIDTH = 16
# /proc/cpuinfo flags that decide which kernels and precisions run well (x86 and ARM names).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which it has no native bf16 instructions.
_ONEDNN_NO_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """Every flag of the first CPU in /proc/cpuinfo (``flags`` on x86, ``Features`` on ARM); empty if unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@dataclass(frozen=True)
class CpuIsa:
    """The CPU's instruction sets as this process may use them."""

    capability: str
    """``torch.backends.cpu.get_cpu_capability()``: the ATen kernels in use (honours ATEN_CPU_CAPABILITY)."""
    flags: tuple[str, ...]
    """The ISA_FLAGS the CPU has."""
    onednn_max_isa: str | None
    """ONEDNN_MAX_CPU_ISA, when set (caps oneDNN's convolutions)."""
    isa_class: str
    """amx, avx512, avx2 or generic: the class of kernels this process runs (benchmarks are keyed by it)."""
    native_bf16: bool
    """bf16 matmuls/convolutions run in hardware (AMX or AVX512-BF16, not capped away)."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags)}


def cpu_isa() -> CpuIsa:
    """The CPU's ISA class under the current environment (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA)."""
    flags = cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() or None
    aten_avx512 = capability.startswith("AVX512")
    onednn_avx512 = cap is None or cap.startswith(("AVX512", "AMX", "ALL", "DEFAULT"))
    bf16_hw = "amx_bf16" in flags or "avx512_bf16" in flags
    native_bf16 = bf16_hw and aten_avx512 and (cap is None or cap not in _ONEDNN_NO_BF16)
    if aten_avx512 and onednn_avx512 and "amx_bf16" in flags and (cap is None or "AMX" in cap or cap == "ALL"):
        isa_class = "amx"
    elif aten_avx512 and onednn_avx512:
        isa_class = "avx512"
    elif capability.startswith("AVX2") or "avx2" in flags:
        isa_class = "avx2"
    else:
        isa_class = "generic"
    return CpuIsa(capability, tuple(f for f in ISA_FLAGS if f in flags), cap, isa_class, native_bf16)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (see the module docstring)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_isa().native_bf16


def narrowest_conv_width(model: torch.nn.Module) -> int | None:
    """Fewest input channels of any convolution but the ones reading the 3-channel image; None without convs."""
    widths = [m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 3]
    return min(widths) if widths else None


@dataclass(frozen=True)
class Resolved:
    """One hardware-dependent setting: what was asked, what runs, and why."""

    requested: Any
    value: Any
    reason: str


def resolve_precision(requested: str, device: torch.device) -> Resolved:
    """``train.precision``: bf16 or fp32 as given, else bf16 exactly where it is native."""
    if requested != "auto":
        return Resolved(requested, requested, "set explicitly")
    if native_bf16(device):
        where = "CUDA bf16 support" if device.type == "cuda" else f"native bf16 on this CPU ({cpu_isa().isa_class})"
        return Resolved(requested, "bf16", where)
    if device.type == "cuda":
        return Resolved(requested, "fp32", "this CUDA device has no bf16 support")
    isa = cpu_isa().isa_class
    return Resolved(requested, "fp32", f"bf16 would be emulated on this CPU ({isa}: no AMX/AVX512-BF16)")


def resolve_channels_last(
    requested: Any, model: torch.nn.Module, measured: Callable[[], tuple[bool, str]] | None = None
) -> Resolved:
    """``train.channels_last``: as given; else NCHW for a model with a narrow convolution, else
    ``measured()`` (the faster layout on this machine, ``spfde_core.layout_probe``) where given, else
    channels_last (CUDA)."""
    if requested != "auto":
        return Resolved(requested, bool(requested), "set explicitly")
    width = narrowest_conv_width(model)
    if width is None:
        return Resolved(requested, False, "no convolutions")
    if width < MIN_CHANNELS_LAST_WIDTH:
        return Resolved(
            requested,
            False,
            f"a convolution has {width} < {MIN_CHANNELS_LAST_WIDTH} input channels (unsafe, slower in channels_last)",
        )
    if measured is not None:
        return Resolved(requested, *measured())
    return Resolved(requested, True, f"every convolution has >= {MIN_CHANNELS_LAST_WIDTH} input channels")
