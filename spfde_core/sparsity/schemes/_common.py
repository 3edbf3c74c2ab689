"""Helpers shared by the schemes: argument validation, count rounding and deterministic selection.

Every scheme ranks candidates the same way (base.py conventions): highest score first, ties to the
lower flat index, and random choices drawn from a caller-supplied ``torch.Generator`` so that a run
is reproducible from its seed.
"""

from __future__ import annotations

import math

import torch


def shape_str(shape: torch.Size | tuple[int, ...]) -> str:
    """Render a shape as ``(a, b, ...)`` for error messages (``torch.Size([...])`` is noisier)."""
    return str(tuple(int(s) for s in shape))


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as a float, raising ValueError unless it is a number in [0, 1]."""
    value = float(sparsity)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    return value


def round_count(x: float) -> int:
    """Round a real unit count to an int with Python's ``round`` (half to even).

    One rounding rule for every scheme keeps ``active_count`` predictable; the float error of
    ``(1 - s) * n`` (e.g. 0.9999999999999998 for s=0.9, n=10) is far from a .5 boundary in practice.
    """
    return int(round(x))


def check_mask(mask: torch.Tensor) -> None:
    """Masks are bool tensors (base.py); a float 0/1 mask would silently break ``&`` / ``~``."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        dtype = getattr(mask, "dtype", type(mask).__name__)
        raise ValueError(f"mask must be a bool tensor, got {dtype}")


def check_scores(scores: torch.Tensor, mask: torch.Tensor) -> None:
    """Scores must be a finite, non-negative float tensor of the mask's shape.

    Non-negativity matters because unit scores are sums (base.py): a negative element would let a
    unit rank above a unit whose every element scores higher.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        dtype = getattr(scores, "dtype", type(scores).__name__)
        raise ValueError(f"scores must be a floating-point tensor, got {dtype}")
    if scores.shape != mask.shape:
        raise ValueError(f"scores shape {shape_str(scores.shape)} does not match mask shape {shape_str(mask.shape)}")
    if not bool(torch.isfinite(scores).all()) or bool((scores < 0).any()):
        raise ValueError("scores must be finite and non-negative (base.py: additive scores)")


def top_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest entries of a 1-D tensor; ties go to the lower index.

    A stable descending sort keeps equal values in their original (index) order, which is exactly
    the tie rule of base.py.
    """
    return torch.sort(values, descending=True, stable=True).indices[:k]


def row_ranks(keys: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of each entry within its row of a 2-D tensor, highest key first, ties to
    the lower column. Used to keep a per-row, variable number of entries with one sort."""
    order = torch.sort(keys, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(keys.shape[1], device=keys.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


def random_perm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A uniform random permutation of ``range(n)`` drawn with ``generator``, moved to ``device``.

    It is drawn on the generator's own device (CPU for the default), so the same seed gives the
    same permutation whatever device the mask lives on.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=gen_device).to(device)


def random_uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) keys of ``shape`` drawn with ``generator`` (see ``random_perm``)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float64).to(device)


def random_int(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform integers in [0, high) of ``shape`` drawn with ``generator`` (see ``random_perm``)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(high, shape, generator=generator, device=gen_device).to(device)
