"""The fused masked SGD update (spfde_core/ops/fused_update.py) equals the eager masked update.

Reference = the production optimizer, ``MaskedSGD(impl="eager")`` (``eager_masked_update``, whose
docstring states the element rule); it is checked once, bit for bit, against torch.optim.SGD's step
between the maskings (the path it replaced). Fused = csrc/fused_sgd.cpp (CPU) and the Triton kernel,
run on CPU tensors through Triton's interpreter (TRITON_INTERPRET=1, in a subprocess so the variable
is set before triton is imported); on a GPU: tests/ops/test_triton_gpu.py (``pytest -m gpu``).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from spfde_core.ops import native
from spfde_core.ops.fused_update import (
    AUTO_CUDA_REASON,
    FusedUpdateUnavailable,
    MaskedSGD,
    same_dense_layout,
    select_impl,
)

needs_native = pytest.mark.skipif(
    native.unavailable_reason("fused_sgd") is not None, reason=str(native.unavailable_reason("fused_sgd"))
)
# Every ISA build of the kernel this CPU runs (avx512, avx2, generic): each must equal eager bit for bit.
RUNNABLE_TARGETS = [
    t.name
    for t in native.TARGETS.values()
    if t.rank <= native.isa_cap() and all(f in native.hardware.cpu_flags() for f in t.cpu_flags)
]


@pytest.fixture(params=RUNNABLE_TARGETS)
def native_target(request, monkeypatch) -> str:
    """Caps our kernels at one ISA target (SPFDE_NATIVE_ISA) for the test."""
    monkeypatch.setenv("SPFDE_NATIVE_ISA", request.param)
    assert native.loaded_target("fused_sgd") == request.param
    return request.param


ROOT = Path(__file__).resolve().parents[2]


def make_model(seed: int = 0, channels_last: bool = True) -> nn.ModuleDict:
    """A masked conv (channels_last), a masked linear, a dense linear and a frozen linear."""
    torch.manual_seed(seed)
    model = nn.ModuleDict(
        {"conv": nn.Conv2d(8, 16, 3), "fc": nn.Linear(40, 24), "dense": nn.Linear(24, 10), "frozen": nn.Linear(5, 5)}
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.frozen.requires_grad_(False)
    with torch.no_grad():
        for name in ("conv", "fc"):
            module = model[name]
            module.register_buffer("weight_mask", torch.rand_like(module.weight) > 0.8)
            module.weight.mul_(module.weight_mask)
    return model


def run_steps(impl: str, steps: int = 4, reset_momentum: bool = True, **hyper: float) -> nn.ModuleDict:
    model = make_model()
    params = [p for p in model.parameters()]
    groups = [{"params": params[:4]}, {"params": params[4:], "lr": 0.03}]  # two groups, two LRs
    if impl == "reference":  # the old trainer path, spelled out with torch.optim.SGD
        opt = torch.optim.SGD(groups, lr=0.1, **hyper)
    else:
        opt = MaskedSGD(groups, lr=0.1, impl=impl, **hyper)
        opt.register_masks({"conv": model.conv, "fc": model.fc}, mask_momentum=reset_momentum)
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == 2:  # a mask update, as the engine does it: pruned momentum survives only without reset
            change_masks(model, opt, reset_momentum)
        for p in params:
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=generator).to(memory_format=_format(p))
        if impl == "reference":
            with torch.no_grad():
                for name in ("conv", "fc"):
                    model[name].weight.grad.mul_(model[name].weight_mask)
                opt.step()
                for name in ("conv", "fc"):
                    model[name].weight.mul_(model[name].weight_mask)
                    buf = opt.state.get(model[name].weight, {}).get("momentum_buffer")
                    if reset_momentum and buf is not None:
                        buf.mul_(model[name].weight_mask)
        else:
            opt.step()
    model.optimizer = opt  # type: ignore[assignment]  (for the assertions)
    return model


@torch.no_grad()
def change_masks(model: nn.ModuleDict, opt: torch.optim.Optimizer, reset_momentum: bool) -> None:
    generator = torch.Generator().manual_seed(7)
    for name in ("conv", "fc"):
        module = model[name]
        module.weight_mask.copy_(torch.rand(module.weight.shape, generator=generator) > 0.8)
        module.weight.mul_(module.weight_mask)
        buf = opt.state.get(module.weight, {}).get("momentum_buffer")
        if reset_momentum and buf is not None:
            buf.mul_(module.weight_mask)


def _format(p: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if p.dim() == 4 else torch.contiguous_format


HYPER = [
    {"momentum": 0.9, "weight_decay": 1e-4},
    {"momentum": 0.9, "weight_decay": 1e-4, "nesterov": True},
    {"momentum": 0.9, "weight_decay": 0.0},
    {"momentum": 0.8, "weight_decay": 5e-4, "dampening": 0.1},
    {"momentum": 0.0, "weight_decay": 1e-4},
]


def assert_same(a: nn.ModuleDict, b: nn.ModuleDict, exact: bool = False) -> None:
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        if exact:
            assert torch.equal(pa, pb), name
        else:
            torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
        sa = a.optimizer.state.get(pa, {}).get("momentum_buffer")
        sb = b.optimizer.state.get(pb, {}).get("momentum_buffer")
        assert (sa is None) == (sb is None), name
        if sa is not None:
            torch.testing.assert_close(sa, sb, rtol=1e-5, atol=1e-6, msg=f"{name} momentum")
            assert sa.stride() == sb.stride(), name


@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
@pytest.mark.parametrize("reset_momentum", [True, False])
def test_eager_impl_is_the_old_path_bit_for_bit(hyper: dict, reset_momentum: bool) -> None:
    assert_same(
        run_steps("reference", 3, reset_momentum, **hyper), run_steps("eager", 3, reset_momentum, **hyper), True
    )


@needs_native
@pytest.mark.parametrize("hyper", HYPER, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
@pytest.mark.parametrize("reset_momentum", [True, False])
def test_fused_cpu_equals_eager(hyper: dict, reset_momentum: bool, native_target: str) -> None:
    eager = run_steps("eager", 4, reset_momentum, **hyper)
    fused = run_steps("fused_cpu", 4, reset_momentum, **hyper)
    assert_same(eager, fused)
    assert fused.optimizer.fused_params == 6 and fused.optimizer.eager_params == 0  # frozen: skipped
    for name in ("conv", "fc"):  # pruned weights are exactly zero, not merely small
        module = fused[name]
        assert torch.all(module.weight[~module.weight_mask] == 0)
        buf = fused.optimizer.state.get(module.weight, {}).get("momentum_buffer")
        if reset_momentum and buf is not None:
            assert torch.all(buf[~module.weight_mask] == 0)
        if not reset_momentum and hyper["momentum"]:
            assert buf[~module.weight_mask].abs().sum() > 0  # the test would notice a stray masking


@needs_native
def test_frozen_parameters_are_untouched_and_get_no_state() -> None:
    before = make_model().frozen.weight.clone()
    fused = run_steps("fused_cpu", 3, momentum=0.9, weight_decay=1e-4)
    assert torch.equal(fused.frozen.weight, before)
    assert fused.frozen.weight not in fused.optimizer.state or not fused.optimizer.state[fused.frozen.weight]


@needs_native
def test_fused_takes_large_tensors_across_thread_chunks(native_target: str) -> None:
    """Sizes that do not divide the threads' 16-element-aligned ranges, several tensors per range."""
    torch.manual_seed(3)
    sizes = [70001, 3, 0, 131073, 17]
    results = []
    for impl in ("eager", "fused_cpu"):
        torch.manual_seed(3)
        params = [nn.Parameter(torch.randn(n)) for n in sizes]
        opt = MaskedSGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True, impl=impl)
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        results.append(params)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_native
def test_a_gradient_of_another_layout_falls_back_to_eager_ops_for_that_parameter() -> None:
    results = []
    for impl in ("eager", "fused_cpu"):
        torch.manual_seed(0)
        conv = nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
        conv.register_buffer("weight_mask", torch.rand_like(conv.weight) > 0.5)
        opt = MaskedSGD(conv.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, impl=impl)
        opt.register_masks({"conv": conv}, mask_momentum=True)
        for _ in range(2):
            conv.weight.grad = torch.randn(conv.weight.shape)  # contiguous, while the weight is channels_last
            conv.bias.grad = torch.randn(conv.bias.shape)
            opt.step()
        results.append((conv, opt))
    (eager, _), (fused, opt) = results
    assert opt.eager_params == 1 and opt.fused_params == 1
    torch.testing.assert_close(eager.weight, fused.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eager.bias, fused.bias, rtol=1e-5, atol=1e-6)


def test_same_dense_layout() -> None:
    w = torch.empty(8, 4, 3, 3).to(memory_format=torch.channels_last)
    assert same_dense_layout(w, torch.empty_like(w), torch.ones_like(w, dtype=torch.bool))
    assert not same_dense_layout(w, torch.empty(8, 4, 3, 3))
    assert not same_dense_layout(torch.empty(8, 8)[:, :4], torch.empty(8, 8)[:, :4])  # not dense
    one_by_one = torch.empty(8, 4, 1, 1)
    assert same_dense_layout(one_by_one, one_by_one.to(memory_format=torch.channels_last))  # size-1 dims ignored


@needs_native
def test_state_dict_is_torch_sgd_and_resumes_identically() -> None:
    """A fused optimizer's state dict loads into torch.optim.SGD and back; steps continue identically."""
    a = run_steps("fused_cpu", 2, momentum=0.9, weight_decay=1e-4)
    plain = torch.optim.SGD([{"params": list(a.parameters())[:4]}, {"params": list(a.parameters())[4:]}], lr=0.1)
    plain.load_state_dict(copy.deepcopy(a.optimizer.state_dict()))  # load_state_dict may share the buffers
    b = make_model()
    b.load_state_dict(a.state_dict())
    params = list(b.parameters())
    opt = MaskedSGD([{"params": params[:4]}, {"params": params[4:]}], lr=0.1, impl="fused_cpu")
    opt.load_state_dict(copy.deepcopy(plain.state_dict()))
    opt.register_masks({"conv": b.conv, "fc": b.fc}, mask_momentum=True)
    for model, optimizer in ((a, a.optimizer), (b, opt)):
        g = torch.Generator().manual_seed(9)
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=g).to(memory_format=_format(p))
        optimizer.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_select_impl() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert select_impl("eager", cpu) == ("eager", "train.update_impl=eager")
    if native.unavailable_reason("fused_sgd") is None:
        assert select_impl("auto", cpu) == ("fused_cpu", None)
        assert select_impl("fused", cpu) == ("fused_cpu", None)
    if os.environ.get("TRITON_INTERPRET") != "1":
        # auto stays eager on CUDA until the Triton kernel has passed tests/ops/test_triton_gpu.py on a GPU
        assert select_impl("auto", cuda) == ("eager", AUTO_CUDA_REASON)
        with pytest.raises(FusedUpdateUnavailable, match="triton cannot run here"):
            select_impl("triton", cpu)
    with pytest.raises(ValueError, match="update_impl"):
        select_impl("fastest", cpu)


def test_fused_unavailable_falls_back_under_auto_and_raises_under_fused(monkeypatch) -> None:
    monkeypatch.setenv("SPFDE_DISABLE_NATIVE", "1")
    assert select_impl("auto", torch.device("cpu")) == ("eager", "disabled by SPFDE_DISABLE_NATIVE")
    with pytest.raises(FusedUpdateUnavailable, match="SPFDE_DISABLE_NATIVE"):
        select_impl("fused", torch.device("cpu"))


TRITON_SCRIPT = textwrap.dedent(
    """
    import os, sys
    assert os.environ["TRITON_INTERPRET"] == "1"
    sys.path.insert(0, os.environ["TESTS_OPS"])
    import torch
    from test_fused_update import HYPER, assert_same, run_steps
    for hyper in HYPER:
        for reset in (True, False):
            eager = run_steps("eager", 3, reset, **hyper)
            fused = run_steps("triton", 3, reset, **hyper)
            assert_same(eager, fused)
            assert fused.optimizer.fused_params == 6 and fused.optimizer.eager_params == 0
            for name in ("conv", "fc"):
                m = fused[name]
                assert torch.all(m.weight[~m.weight_mask] == 0)
    print("triton-interpreter-ok")
    """
)


def test_triton_kernel_equals_eager_under_the_interpreter() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "TESTS_OPS": str(Path(__file__).parent)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "triton-interpreter-ok" in done.stdout


class KeepModel:
    """Keeps the trained model's parameters (a callback)."""

    def on_train_end(self, state) -> None:  # noqa: ANN001
        self.params = {k: v.detach().clone() for k, v in state.model.named_parameters()}
        self.masks = {k: v.clone() for k, v in state.model.named_buffers() if k.endswith("weight_mask")}


@needs_native
@pytest.mark.smoke
@pytest.mark.parametrize("method", ["static_random", "set", "snfs"])
def test_training_with_the_fused_update_equals_eager(smoke_overrides, tmp_path, method: str) -> None:
    """Static (static_random) and dynamic (SET; SNFS reads the dense gradient) sparse training: the
    fused path ends where the eager path does, to float tolerance, with the same masks."""
    from spfde_core.cli import load_config
    from spfde_core.train.run import run_training

    runs = {}
    for impl in ("eager", "fused"):
        keep = KeepModel()
        overrides = [*smoke_overrides, f"sparsity={method}", "train.precision=fp32", f"train.update_impl={impl}"]
        overrides += [f"run.results_dir={tmp_path / impl}", f"run.checkpoint_dir={tmp_path / (impl + 'ck')}"]
        record = run_training(load_config(overrides), extra_callbacks=[keep])
        runs[impl] = (record, keep)
    (eager, keep_eager), (fused, keep_fused) = runs["eager"], runs["fused"]
    assert eager["update"]["impl"] == "eager" and eager["update"]["fallback_reason"] == "train.update_impl=eager"
    assert fused["update"] == {**fused["update"], "impl": "fused_cpu", "fused": True, "masks_in_step": True}
    assert fused["update"]["eager_params_last_step"] == 0
    assert eager["config_hash"] == fused["config_hash"]
    assert eager["sparsity"]["num_mask_updates"] == fused["sparsity"]["num_mask_updates"]
    for name, mask in keep_eager.masks.items():
        assert torch.equal(mask, keep_fused.masks[name]), name
    for name, param in keep_eager.params.items():
        torch.testing.assert_close(param, keep_fused.params[name], rtol=1e-4, atol=1e-5)
    for name, mask in keep_fused.masks.items():
        weight = keep_fused.params[name.removesuffix("_mask")]
        assert torch.all(weight[~mask] == 0), name
    assert fused["results"]["final_train_loss"] == pytest.approx(eager["results"]["final_train_loss"], rel=1e-4)
