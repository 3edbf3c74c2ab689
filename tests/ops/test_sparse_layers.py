"""Sparse layers in the trainer: dispatch, agreement with masked dense training, dense-gradient steps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spfde_core.cli import load_config
from spfde_core.config import ConfigError
from spfde_core.models import build_model
from spfde_core.ops import native, sparse_layers
from spfde_core.ops.sparse_layers import SparseLayerKernel
from spfde_core.train.run import run_training

pytestmark = pytest.mark.skipif(
    native.unavailable_reason("spconv") is not None, reason=str(native.unavailable_reason("spconv"))
)


def _masked_resnet20(sparsity: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10)
    for layer in model.prunable_layers():
        if model.sparse_by_default(layer.name, layer.module):
            mask = torch.rand_like(layer.module.weight) >= sparsity
            layer.module.register_buffer("weight_mask", mask)
            with torch.no_grad():
                layer.module.weight.mul_(mask)
    return model


def test_model_with_sparse_kernels_matches_masked_dense_model() -> None:
    dense = _masked_resnet20(0.95)
    sparse = copy.deepcopy(dense)
    kernels = [SparseLayerKernel(n, m, 0.9) for n, m in sparse.named_modules() if hasattr(m, "weight_mask")]
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    losses = []
    for model in (dense, sparse):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    modules = dict(dense.named_modules())
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        module = modules[name.rsplit(".", 1)[0]]
        expected, got = p_dense.grad, p_sparse.grad
        if hasattr(module, "weight_mask") and name.endswith(".weight"):  # as the engine masks them
            expected, got = expected * module.weight_mask, got * module.weight_mask
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), name
    used = {k.name: k.calls["sparse"] for k in kernels}
    # every stride-1 sparse conv ran on the kernels; the two strided ones fell back, with the reason
    assert sum(1 for calls in used.values() if calls) == len(kernels) - 2
    assert all("stride" in k.static_reason for k in kernels if not k.calls["sparse"])


def test_threshold_sends_denser_layers_to_the_masked_path() -> None:
    model = _masked_resnet20(0.5)
    kernels = [SparseLayerKernel(n, m, 0.9) for n, m in model.named_modules() if hasattr(m, "weight_mask")]
    model(torch.randn(16, 3, 32, 32))
    assert all(k.calls == {"sparse": 0, "masked": 1} for k in kernels)
    assert any("sparse_kernel_min_sparsity" in (k.last_reason or "") for k in kernels)


def test_mask_change_rebuilds_the_plan() -> None:
    model = _masked_resnet20(0.95)
    conv = model.blocks[1].conv1
    kernel = SparseLayerKernel("conv", conv, 0.0)
    before = kernel.current_plan()
    assert kernel.current_plan() is before  # cached while the mask is unchanged
    conv.weight_mask[0, 0, 1, 1] = not bool(conv.weight_mask[0, 0, 1, 1])  # in place, as the engine does
    after = kernel.current_plan()
    assert after is not before and abs(after.nnz - before.nnz) == 1


def _train_overrides(smoke_overrides: list[str], kernels: str, *extra: str) -> list[str]:
    return [
        *smoke_overrides,
        "sparsity=static_random",
        "sparsity.target=0.95",
        "train.epochs=1",
        "train.max_batches_per_epoch=3",
        "train.precision=fp32",
        "train.channels_last=false",
        f"train.sparse_kernels={kernels}",
        f"run.row=kernels-{kernels}",
        *extra,
    ]


@pytest.mark.smoke
def test_training_with_sparse_kernels_matches_masked_dense(smoke_overrides) -> None:
    on = run_training(load_config(_train_overrides(smoke_overrides, "on")))
    off = run_training(load_config(_train_overrides(smoke_overrides, "off")))
    assert on["results"]["final_train_loss"] == pytest.approx(off["results"]["final_train_loss"], rel=1e-4)
    assert on["results"]["final_test_loss"] == pytest.approx(off["results"]["final_test_loss"], rel=1e-3)
    assert "sparse_kernels" not in off
    layers = on["sparse_kernels"]["layers"]
    assert sum(layer["sparse_calls"] > 0 for layer in layers) == len(layers) - 2  # two strided convs
    assert on["sparsity"]["layers"] == off["sparsity"]["layers"]  # same masks, exact counts


@pytest.mark.smoke
def test_rigl_update_steps_take_the_dense_gradient_path(smoke_overrides) -> None:
    record = run_training(
        load_config(
            _train_overrides(
                smoke_overrides, "on", "sparsity=rigl", "sparsity.update_interval_steps=2", "sparsity.target=0.95"
            )
        )
    )
    # 3 training steps, RigL updates at step 2 only (never at step 0): one masked forward per layer
    # there, the two other steps and evaluation on the kernels
    conv = next(layer for layer in record["sparse_kernels"]["layers"] if layer["name"] == "layer1.0.conv1")
    assert conv["masked_calls"] == 1  # the cost meter's trace on the meta device is not a call
    assert conv["sparse_calls"] >= 2


def test_on_without_kernels_is_a_config_error(smoke_overrides, monkeypatch) -> None:
    monkeypatch.setattr(sparse_layers.native, "unavailable_reason", lambda kernel: "no compiler (test)")
    with pytest.raises(ConfigError, match="train.sparse_kernels=on: no compiler"):
        run_training(load_config(_train_overrides(smoke_overrides, "on")))


def test_auto_leaves_channels_last_inputs_on_the_masked_path() -> None:
    """auto only takes NCHW inputs: converting channels_last activations costs more than it saves."""
    model = _masked_resnet20(0.98)
    kernels = [
        SparseLayerKernel(n, m, 0.95, require_nchw=True) for n, m in model.named_modules() if hasattr(m, "weight_mask")
    ]
    model(torch.randn(16, 3, 32, 32))
    assert sum(k.calls["sparse"] for k in kernels) == len(kernels) - 2  # NCHW: all stride-1 layers
    model.to(memory_format=torch.channels_last)
    model(torch.randn(16, 3, 32, 32).to(memory_format=torch.channels_last))
    assert sum(k.calls["masked"] for k in kernels) == 2 + len(kernels)
    assert any("channels_last" in (k.last_reason or "") for k in kernels)


def test_auto_leaves_compiled_runs_alone(smoke_overrides) -> None:
    """Under torch.compile the per-call dispatch would recompile every step: auto attaches nothing."""
    from spfde_core.ops.sparse_layers import attach_sparse_kernels
    from spfde_core.sparsity.engine import SparseTraining

    engine = object.__new__(SparseTraining)  # only its type matters here
    cfg = load_config(_train_overrides(smoke_overrides, "auto", "train.compile=true"))
    assert attach_sparse_kernels([engine], cfg, torch.device("cpu")) == []
    cfg = load_config(_train_overrides(smoke_overrides, "auto"))
    assert len(attach_sparse_kernels([engine], cfg, torch.device("cpu"))) == 1


def test_sparse_linear_layer_reuses_its_plan_and_follows_autocast(monkeypatch) -> None:
    linear = torch.nn.Linear(64, 32)
    mask = torch.rand(32, 64) >= 0.99
    linear.register_buffer("weight_mask", mask)
    with torch.no_grad():
        linear.weight.mul_(mask)
    kernel = SparseLayerKernel("fc", linear, 0.9)
    x = torch.randn(20, 64)
    y = linear(x)
    plan = kernel.plan
    assert kernel.calls["sparse"] == 1 and plan is not None
    assert torch.allclose(y, F.linear(x, linear.weight * mask, linear.bias), atol=1e-5)
    linear(x)
    assert kernel.plan is plan  # a 2-D mask's plan is cached like a conv's
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x).dtype == torch.bfloat16  # as autocast makes the masked dense layer
    monkeypatch.setattr(sparse_layers, "MAX_WGRAD_SCRATCH_BYTES", 1024)
    linear(x)
    assert "weight-gradient scratch" in kernel.last_reason and kernel.calls["masked"] == 1
