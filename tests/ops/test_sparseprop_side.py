"""benchmarks/sparse_kernels.py's SparseProp side (issue 19): measured or skipped with a reason, and
agreeing with the masked dense convolution where SparseProp is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sparse_kernels  # noqa: E402
import sparseprop_side  # noqa: E402

SP, STATUS = sparseprop_side.load()
needs_sparseprop = pytest.mark.skipif(SP is None, reason=f"SparseProp side skipped: {STATUS.get('skipped')}")


def test_status_says_why_when_sparseprop_is_missing() -> None:
    if SP is None:
        assert STATUS["skipped"]  # a reason, with how to install it
    else:
        assert STATUS["version"] and STATUS["omp_runtimes"]
        assert len(STATUS["omp_runtimes"]) == 1  # one OpenMP runtime: torch.set_num_threads holds for both


def test_import_failure_is_a_skip_with_the_reason(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sparseprop", None)  # as if not installed
    monkeypatch.setattr(sparseprop_side, "emulating_avx2", lambda: False)
    sp, status = sparseprop_side.load()
    assert sp is None and "cannot be imported" in status["skipped"] and "pip install" in status["skipped"]


def test_layer_row_has_the_sparseprop_side_measured_or_skipped() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    shape = (8, 8, 8, 8)
    dense = sparse_kernels.time_dense(conv, shape, repeats=1)
    assert dense["best_mode"] in dense["modes_ms"] and {"fp32_cl", "fp32_nchw"} <= set(dense["modes_ms"])
    row = sparse_kernels.time_layer(conv, shape, 0.9, "unstructured", 1, dense, SP)
    assert isinstance(row["ours"], dict) or row["ours"].startswith("skipped: ")
    if SP is None:
        assert row["sparseprop"].startswith("skipped: ")
    else:
        side = row["sparseprop"]
        assert side["best_axis"] in sparseprop_side.AXES and side["total_ms"] > 0
        assert side["speedup_vs_best_dense"] > 0 and side["speedup_vs_fp32_dense"] > 0
    summary = sparse_kernels.summarize({"conv": row})
    assert summary["dense_best_ms"] == dense["best_ms"]
    assert ("sparseprop_geomean_speedup" in summary) == (SP is not None)
    assert ("ours_vs_sparseprop_geomean" in summary) == (SP is not None and isinstance(row["ours"], dict))
    strided = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
    row = sparse_kernels.time_layer(strided, shape, 0.9, "unstructured", 1, dense, SP)
    assert row["sparseprop"].startswith("skipped: ") and ("stride" in row["sparseprop"] or SP is None)


@needs_sparseprop
def test_sparseprop_agrees_with_masked_dense_on_a_small_layer() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(12, 8, 3, 3, generator=gen)
    mask = torch.rand(weight.shape, generator=gen) > 0.8
    errors = sparseprop_side.agreement(SP, weight, mask, torch.randn(8, 8, 8, 8, generator=gen), padding=1)
    for axis in sparseprop_side.AXES:
        assert errors[axis]["active"] == int(mask.sum())
        for product in ("output", "input_grad", "weight_grad"):
            assert errors[axis][product] < 1e-5, (axis, product, errors[axis][product])


@needs_sparseprop
def test_batch_axis_is_skipped_where_sparseprop_computes_it_wrong() -> None:
    weight = torch.randn(8, 8, 3, 3) * (torch.rand(8, 8, 3, 3) > 0.9)
    timed = sparseprop_side.time_layer(SP, weight, torch.randn(12, 8, 8, 8), padding=1, repeats=1)
    assert timed["batch"].startswith("skipped: batch 12") and timed["best_axis"] == "width"


@needs_sparseprop
@pytest.mark.parametrize("axis", list(sparseprop_side.AXES))
@pytest.mark.parametrize("batch", [8, 6])
def test_gathered_layer_matches_masked_dense_with_a_dense_weight_gradient(axis: str, batch: int) -> None:
    """The whole-step integration: the trainer's dense weight gets the masked gradient."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, padding=1, bias=False)
    mask = torch.rand(conv.weight.shape) > 0.8
    x = torch.randn(batch, 6, 8, 8, requires_grad=True)
    layer = sparseprop_side.GatheredSparseConv(SP, conv, mask, sparseprop_side.AXES[axis])
    y = layer(x)
    y.square().sum().backward()
    got_y, got_dw, got_dx = y.detach(), conv.weight.grad.clone(), x.grad.clone()
    conv.weight.grad = x.grad = None
    ref = F.conv2d(x, conv.weight * mask, padding=1)
    ref.square().sum().backward()
    torch.testing.assert_close(got_y, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_dx, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_dw, conv.weight.grad, rtol=1e-4, atol=1e-4)
    assert not got_dw[~mask].any()
