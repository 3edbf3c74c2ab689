"""Sparse layers in the trainer: dispatch, agreement with masked dense training, dense-gradient steps."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spfde_core.cli import load_config
from spfde_core.config import ConfigError
from spfde_core.models import build_model
from spfde_core.ops import kernel_probe, native, sparse_layers
from spfde_core.ops.sparse_layers import SparseKernels, SparseLayerKernel
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
def test_auto_training_decides_per_layer_and_matches_masked_dense(smoke_overrides) -> None:
    """The real clock: whichever path wins per layer, the run agrees with masked dense training."""
    # NCHW: the smoke model's 4-channel strided 1x1 convolutions hang oneDNN's AVX2 channels_last kernels
    auto = run_training(load_config(_train_overrides(smoke_overrides, "auto")))
    off = run_training(load_config(_train_overrides(smoke_overrides, "off")))
    assert auto["results"]["final_train_loss"] == pytest.approx(off["results"]["final_train_loss"], rel=1e-4)
    assert auto["sparsity"]["layers"] == off["sparsity"]["layers"]
    block = auto["sparse_kernels"]
    assert block["mode"] == "auto" and block["min_sparsity"] == 0.8
    for layer in block["layers"]:
        if "stride" in (layer["last_masked_reason"] or ""):
            assert layer["decisions"] == [] and layer["sparse_calls"] == 0
            continue
        decisions = layer["decisions"]  # training (fwd+bwd) and evaluation (fwd)
        assert {d["passes"] for d in decisions} == {"fwd+bwd", "fwd"}, layer["name"]
        assert all(d["layout"] == "nchw" and d["path"] in ("sparse", "masked") for d in decisions)
        assert all(d["sparse_ms"] > 0 and d["masked_ms"] > 0 for d in decisions)
        assert layer["sparse_calls"] + layer["masked_calls"] > 0


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


# --- train.sparse_kernels=auto: the path measured faster per layer and key, cached per machine ---


def _sparse_conv(sparsity: float, channels: int = 16) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    mask = torch.zeros(conv.weight.numel(), dtype=torch.bool)
    mask[torch.randperm(mask.numel())[: round((1 - sparsity) * mask.numel())]] = True  # exactly this sparsity
    conv.register_buffer("weight_mask", mask.view(conv.weight.shape))
    with torch.no_grad():
        conv.weight.mul_(conv.weight_mask)
    return conv


def _input(batch: int = 8, channels: int = 16) -> torch.Tensor:
    return torch.randn(batch, channels, 16, 16, requires_grad=True)


@pytest.fixture
def clock(monkeypatch, tmp_path):
    """A stubbed clock: ``times`` (seconds per path) decide, ``calls`` counts the timed passes; a fresh cache."""
    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path / "cache"))
    stub = SimpleNamespace(times={"masked": 3e-3, "sparse": 1e-3}, calls=[])

    def time_pass(path, run, x, weight, dx, dw) -> float:
        stub.calls.append((path, dx, dw))
        return stub.times[path]

    monkeypatch.setattr(kernel_probe, "time_pass", time_pass)
    return stub


@pytest.mark.parametrize("faster", ["sparse", "masked"])
def test_auto_takes_the_path_measured_faster(clock, faster) -> None:
    clock.times = {"masked": 3e-3, "sparse": 1e-3} if faster == "sparse" else {"masked": 1e-3, "sparse": 3e-3}
    kernel = SparseLayerKernel("conv", _sparse_conv(0.9), 0.8, measure=True)
    kernel.module(_input()).sum().backward()
    assert kernel.calls == {"sparse": int(faster == "sparse"), "masked": int(faster == "masked")}
    # 1 warm-up + 3 timed passes per path, alternated; forward + both gradients
    assert [p for p, _, _ in clock.calls] == ["masked", "sparse"] * 4
    assert all(dx and dw for _, dx, dw in clock.calls)
    if faster == "masked":
        assert kernel.last_reason == "measured: masked 1.00 ms < sparse 3.00 ms (fwd+bwd, measured now)"
    (decision,) = kernel.decisions.values()
    assert decision == {
        "input_shape": [8, 16, 16, 16],
        "dtype": "fp32",
        "autocast": None,
        "layout": "nchw",
        "sparsity": 0.9,
        "passes": "fwd+bwd",
        "path": faster,
        "sparse_ms": clock.times["sparse"] * 1e3,
        "masked_ms": clock.times["masked"] * 1e3,
        "cached": False,
    }


def test_decision_is_cached_per_machine_and_reused(clock, monkeypatch) -> None:
    conv = _sparse_conv(0.9)
    first = SparseLayerKernel("conv", conv, 0.8, measure=True)
    conv(_input())
    assert len(clock.calls) == 8
    cache = json.loads(kernel_probe.cache_path().read_text())
    (key,) = cache
    assert key.startswith(kernel_probe.machine_key()) and "x[8, 16, 16, 16]" in key and "sparsity 0.90" in key
    assert cache[key] == clock.times
    reads = []
    decide = kernel_probe.decide
    monkeypatch.setattr(kernel_probe, "decide", lambda *a: reads.append(a) or decide(*a))
    conv(_input())  # the same key: the layer's own memory, no file read
    assert len(clock.calls) == 8 and not reads and first.calls["sparse"] == 2
    clock.times = {"masked": 1e-3, "sparse": 3e-3}  # a new measurement would now choose masked
    first.detach()
    other = _sparse_conv(0.9)  # the same seed: the same mask
    second = SparseLayerKernel("conv", other, 0.8, measure=True)
    other(_input())  # another layer instance (or process) with the same key: read from the cache
    assert len(clock.calls) == 8 and len(reads) == 1 and second.calls["sparse"] == 1
    assert next(iter(second.decisions.values()))["cached"] is True
    other(_input(batch=3))  # the last partial batch: another key, measured
    assert len(clock.calls) == 16 and second.calls["masked"] == 1
    assert second.last_reason == "measured: masked 1.00 ms < sparse 3.00 ms (fwd+bwd, measured now)"
    assert len(json.loads(kernel_probe.cache_path().read_text())) == 2


def test_new_sparsity_bucket_decides_again(clock) -> None:
    conv = _sparse_conv(0.9)
    kernel = SparseLayerKernel("conv", conv, 0.8, measure=True)
    conv(_input())
    with torch.no_grad():  # in place, as the engine updates masks
        conv.weight_mask.copy_(torch.rand_like(conv.weight) >= 0.95)
    conv(_input())
    assert len(clock.calls) == 16
    assert [d["sparsity"] for d in kernel.decisions.values()] == [0.9, round(kernel.sparsity(), 2)]


def test_damaged_cache_is_ignored_with_a_warning(clock, caplog) -> None:
    path = kernel_probe.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"half a')
    conv = _sparse_conv(0.9)
    kernel = SparseLayerKernel("conv", conv, 0.8, measure=True)
    with caplog.at_level(logging.WARNING, logger="spfde_core.ops.kernel_probe"):
        conv(_input())
    assert "unreadable sparse-kernel cache" in caplog.text
    assert len(clock.calls) == 8 and kernel.calls["sparse"] == 1
    assert list(json.loads(path.read_text()).values()) == [clock.times]  # replaced by a valid cache


def test_unwritable_cache_warns_and_keeps_the_decision(clock, caplog, tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path / "file" / "cache"))  # a parent that is a file
    conv = _sparse_conv(0.9)
    kernel = SparseLayerKernel("conv", conv, 0.8, measure=True)
    with caplog.at_level(logging.WARNING, logger="spfde_core.ops.kernel_probe"):
        conv(_input())
        conv(_input())
    assert "could not cache the sparse-kernel measurement" in caplog.text
    assert len(clock.calls) == 8 and kernel.calls["sparse"] == 2


def test_measurement_leaves_the_random_stream_and_the_gradients_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path))
    conv = _sparse_conv(0.9)
    kernel = SparseLayerKernel("conv", conv, 0.8, measure=True)  # the real clock
    x = _input()
    state = torch.get_rng_state()
    y = conv(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert conv.weight.grad is None and x.grad is None  # the measurement touched no .grad
    assert len(kernel.decisions) == 1
    assert torch.allclose(y, F.conv2d(x, conv.weight * conv.weight_mask, padding=1), atol=1e-5)
    # a path that draws random numbers (dropout) still leaves the run's stream where it was
    state = torch.get_rng_state()
    times = kernel_probe.measure(
        lambda x, w: F.dropout(F.conv2d(x, w, padding=1), 0.5), kernel.sparse_path, x, conv.weight, True, True
    )
    assert torch.equal(torch.get_rng_state(), state) and set(times) == {"masked", "sparse"}


def test_below_the_floor_nothing_is_measured(clock) -> None:
    conv = _sparse_conv(0.5)
    kernel = SparseLayerKernel("conv", conv, 0.8, measure=True)
    conv(_input())
    assert not clock.calls and not kernel.decisions and kernel.calls["masked"] == 1
    assert "< train.sparse_kernel_min_sparsity 0.8" in kernel.last_reason


def _callback(mode: str, modules: dict[str, nn.Module]) -> SparseKernels:
    masks = [SimpleNamespace(name=name, module=module) for name, module in modules.items()]
    callback = SparseKernels([SimpleNamespace(masks=masks)], mode, 0.8)
    callback.on_train_start(SimpleNamespace(device=torch.device("cpu")))
    return callback


def test_on_never_measures(clock) -> None:
    conv = _sparse_conv(0.5)  # below auto's floor too: `on` takes every supported layer
    callback = _callback("on", {"conv": conv})
    conv(_input())
    conv(_input().to(memory_format=torch.channels_last))
    assert not clock.calls and callback.layers[0].calls == {"sparse": 2, "masked": 0}
    assert callback.record(None, None)["sparse_kernels"]["layers"][0]["decisions"] == []


def test_channels_last_input_takes_the_sparse_path_when_measured_faster(clock) -> None:
    conv = _sparse_conv(0.9).to(memory_format=torch.channels_last)
    callback = _callback("auto", {"conv": conv})
    x = _input().detach().to(memory_format=torch.channels_last).requires_grad_(True)
    y = conv(x)
    assert callback.layers[0].calls == {"sparse": 1, "masked": 0} and len(clock.calls) == 8
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert next(iter(callback.layers[0].decisions.values()))["layout"] == "channels_last"
    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    expected = F.conv2d(x_ref, w_ref * conv.weight_mask, padding=1)
    assert torch.allclose(y, expected, rtol=1e-4, atol=1e-5)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    (expected * dy).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    masked_grad = conv.weight.grad * conv.weight_mask  # as the engine masks it
    assert torch.allclose(masked_grad, w_ref.grad * conv.weight_mask, rtol=1e-4, atol=1e-4)


def test_record_decisions_survive_a_state_dict_round_trip(clock, tmp_path) -> None:
    conv = _sparse_conv(0.9)
    callback = _callback("auto", {"conv": conv})
    conv(_input())
    with torch.no_grad():
        conv(_input(batch=4))  # evaluation: a forward-only key of its own
    before = callback.record(None, None)["sparse_kernels"]["layers"]
    assert [(d["passes"], d["input_shape"][0]) for d in before[0]["decisions"]] == [("fwd+bwd", 8), ("fwd", 4)]
    torch.save(callback.state_dict(), tmp_path / "ckpt.pt")
    callback.on_train_end(None)
    resumed = SparseKernels(callback.engines, "auto", 0.8)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    resumed.on_train_start(SimpleNamespace(device=torch.device("cpu")))
    assert resumed.record(None, None)["sparse_kernels"]["layers"] == before
    conv(_input())  # the resumed process decides again, from the cache: the entry is replaced, not added
    after = resumed.record(None, None)["sparse_kernels"]["layers"][0]["decisions"]
    assert len(after) == 2 and after[-1]["cached"] is True and after[-1]["input_shape"][0] == 8
    assert len(clock.calls) == 16  # two keys measured once each, across the resume


def test_checkpoint_from_before_the_decisions_still_resumes(clock) -> None:
    conv = _sparse_conv(0.9)
    callback = SparseKernels([SimpleNamespace(masks=[SimpleNamespace(name="conv", module=conv)])], "auto", 0.8)
    callback.load_state_dict({"conv": ({"sparse": 3, "masked": 1}, "a reason")})  # the former (calls, reason)
    callback.on_train_start(SimpleNamespace(device=torch.device("cpu")))
    (layer,) = callback.record(None, None)["sparse_kernels"]["layers"]
    assert (layer["sparse_calls"], layer["masked_calls"], layer["decisions"]) == (3, 1, [])


def test_the_suite_never_writes_the_users_cache() -> None:
    """tests/conftest.py points $SPFDE_CACHE_DIR at a session tmp folder: the measurements stay there."""
    assert Path.home() / ".cache" not in kernel_probe.cache_path().parents


def test_layout_probe_model_is_the_run_on_the_kernels() -> None:
    """install_for_layout_probe: each layer above the floor masked at its sparsity and on the kernels."""
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10)
    reference = copy.deepcopy(model)  # before the kernels: the masked dense computation, once masked
    names = [layer.name for layer in model.prunable_layers() if model.sparse_by_default(layer.name, layer.module)]
    targets = {name: 0.95 for name in names[:4]} | {name: 0.5 for name in names[4:]}
    kernels = sparse_layers.install_for_layout_probe(model, targets, min_sparsity=0.8)
    assert [k.name for k in kernels] == names[:4]
    modules = {layer.name: layer.module for layer in model.prunable_layers()}
    reference_modules = {layer.name: layer.module for layer in reference.prunable_layers()}
    for name in names[:4]:
        weight, mask = modules[name].weight, modules[name].weight_mask
        assert int(mask.sum()) == round(0.05 * weight.numel()) and torch.all(weight[~mask] == 0)
        with torch.no_grad():
            reference_modules[name].weight.mul_(mask)
    assert not hasattr(modules[names[4]], "weight_mask")  # below the floor: dense, its masked cost
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = model(x)
    out.sum().backward()
    supported = [k for k in kernels if k.static_reason is None]
    assert supported and all(k.calls["sparse"] == 1 for k in supported)
    assert torch.allclose(out, reference(x), atol=1e-4)


def test_layout_probe_model_takes_the_runs_scheme() -> None:
    from spfde_core.sparsity.schemes import get_scheme

    model = build_model("resnet20", num_classes=10)
    blocks = get_scheme("block", block_size=4)
    (kernel,) = sparse_layers.install_for_layout_probe(model, {"layer2.1.conv1": 0.9}, 0.8, scheme=blocks)
    mask = kernel.module.weight_mask
    assert kernel.current_plan().block is not None  # 4x1 blocks: the block kernels, as the run's
    assert int(mask.sum()) == blocks.active_count(mask.shape, 0.9)


def test_sparse_run_layout_probe_times_the_kernels(tmp_path, monkeypatch) -> None:
    """train.channels_last=auto in a sparse run times both layouts masked and on the kernels; off: masked only."""
    from spfde_core import layout_probe
    from spfde_core.train.build import layout_key, resolve_hardware

    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path))
    seen = {}

    def fake_measure(build, image_size, num_classes, batch, bf16, sparsify=None):
        seen["sparsify"] = sparsify
        times = {"nchw": 0.4, "channels_last": 0.3}
        return times | ({"nchw+kernels": 0.2, "channels_last+kernels": 0.35} if sparsify else {})

    monkeypatch.setattr(layout_probe, "measure", fake_measure)
    sparse = ["model=resnet20", "data=synthetic", "train.precision=fp32", "sparsity=mest_ems", "sparsity.target=0.95"]
    cfg = load_config(sparse)
    block = resolve_hardware(cfg, torch.device("cpu"))
    assert cfg.train.channels_last is False and "sparse kernels 350 / 200 ms" in block["channels_last"]["reason"]
    kernels_model = build_model("resnet20", num_classes=10)
    assert seen["sparsify"](kernels_model)  # the run's layers, on the kernels
    cfg = load_config([*sparse, "train.sparse_kernels=off"])
    assert resolve_hardware(cfg, torch.device("cpu"))["channels_last"]["value"] is True and seen["sparsify"] is None
    below_floor = load_config([*sparse[:-1], "sparsity.target=0.75"])  # every layer below the 0.8 floor
    assert layout_key(below_floor, "fp32") == layout_key(cfg, "fp32")  # the masked dense probe, shared
    keys = list(json.loads(layout_probe.cache_path().read_text()))
    (sparse_key,) = [k for k in keys if "sparse kernels" in k]
    assert len(keys) == 2 and "floor 0.8) at mest_ems unstructured" in sparse_key
    assert sparse_key.endswith("uniform 0.95")
    assert layout_key(load_config([*sparse, "sparsity=snfs"]), "fp32") == layout_key(below_floor, "fp32")  # never
    other_layers = load_config([*sparse, "sparsity.keep_dense=[layer3.*]"])
    assert layout_key(other_layers, "fp32") != layout_key(load_config(sparse), "fp32")


def test_layout_probe_measures_a_sparse_run_both_ways() -> None:
    from spfde_core import layout_probe

    torch.manual_seed(5)
    before = torch.get_rng_state()
    sparsify = lambda m: sparse_layers.install_for_layout_probe(  # noqa: E731
        m, {layer.name: 0.9 for layer in m.prunable_layers() if m.sparse_by_default(layer.name, layer.module)}, 0.8
    )
    times = layout_probe.measure(lambda: build_model("resnet20", 10, width=0.5), 32, 10, 4, False, sparsify)
    assert set(times) == {"nchw", "channels_last", "nchw+kernels", "channels_last+kernels"}
    assert all(t > 0 for t in times.values()) and torch.equal(torch.get_rng_state(), before)
