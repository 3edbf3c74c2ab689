"""Sparse kernels vs the masked dense path on this CPU: per layer and per whole training step.

Claim checked (issue 7): at 90 / 95 / 98% unstructured sparsity the whole training step of
``resnet32_w2`` (batch 64) and ResNet-20 (batch 128) is 1.5x / 2x / 3x faster with the sparse
kernels than with masked dense layers; block sparsity (MEST's 4x1 blocks) is measured too. The
script reports what it reaches, whatever it is.

Both sides run in their fastest configuration: the masked dense path in the trainer's default
(bf16 autocast + channels_last, oneDNN/AMX convolutions); the sparse path with bf16 autocast and
NCHW activations (the kernels' layout), and with channels_last for comparison. Both use the same
optimizer update (``train.update_impl=auto``) and the same data loader.

- per layer: forward + backward (input and weight gradient) of every sparse layer of the model on
  its real input shape, median of repeats; the sparse side split into forward, input gradient and
  weight gradient, with useful FLOPs (2 x active weights x output pixels per product) and GFLOP/s;
- whole step: the real trainer's epoch function (forward, loss, backward, masked update, mask
  callbacks) on static random masks at the target sparsity, images/s after a warm-up;
- threshold: the lowest measured sparsity at which every supported layer is faster on the sparse
  kernels (what ``train.sparse_kernel_min_sparsity`` defaults to).

Run:  python benchmarks/sparse_kernels.py [--quick]
Writes results/benchmarks/sparse_kernels.json (with CPU model and library versions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_config import throughput_config

from spfde_core import atomic, provenance
from spfde_core.ops.sparse_conv import build_plan, sparse_conv2d, unsupported_reason
from spfde_core.ops.sparse_layers import attach_sparse_kernels
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.schemes import get_scheme
from spfde_core.train.build import build_data, build_model_for, resolve_device, resolve_hardware
from spfde_core.train.callbacks import CallbackList, TrainState
from spfde_core.train.loop import train_epoch
from spfde_core.train.optim import build_optimizer

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "sparse_kernels.json"
MODELS = (("resnet32_w2", 64), ("resnet20", 128))
SPARSITIES = (0.8, 0.9, 0.95, 0.98)
TARGETS = {0.9: 1.5, 0.95: 2.0, 0.98: 3.0}  # whole-step speedups the issue asks for (unstructured)
SCHEMES = ("unstructured", "block")


def median_ms(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up: oneDNN primitive creation, first-touch allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def layer_inputs(model: str, batch: int) -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    """Each sparse layer of the model (MEST's convention) with the input shape it sees at this batch."""
    torch.manual_seed(0)
    net = load_model(model)
    shapes: dict[str, tuple[torch.nn.Module, tuple[int, ...]]] = {}
    hooks = []
    for layer in net.prunable_layers():
        if net.sparse_by_default(layer.name, layer.module):

            def hook(module, inputs, output, name=layer.name) -> None:
                shapes[name] = (module, tuple(inputs[0].shape))

            hooks.append(layer.module.register_forward_hook(hook))
    with torch.no_grad():
        net(torch.randn(batch, 3, 32, 32))
    for h in hooks:
        h.remove()
    return shapes


def load_model(name: str) -> torch.nn.Module:
    from spfde_core.models import build_model

    return build_model(name, num_classes=10)


def block_mask(weight: torch.Tensor, sparsity: float, scheme: str, seed: int) -> torch.Tensor:
    """A random mask of the scheme at the sparsity, with the scheme's exact count (grow from empty)."""
    kind = get_scheme(scheme, **({"block_size": 4} if scheme == "block" else {}))
    empty = torch.zeros_like(weight, dtype=torch.bool)
    return kind.grow(empty, sparsity, None, torch.Generator().manual_seed(seed))


def time_layer(module: torch.nn.Module, shape: tuple[int, ...], sparsity: float, scheme: str, repeats: int) -> dict:
    """Masked dense (bf16 autocast, channels_last) vs sparse kernels (bf16 NCHW) for one layer."""
    weight = module.weight.detach().clone()
    mask = block_mask(weight, sparsity, scheme, seed=0)
    weight.mul_(mask)
    x = torch.randn(shape)
    out: dict[str, Any] = {"shape": list(shape), "active": int(mask.sum()), "sparsity": sparsity}
    stride, padding = module.stride, module.padding

    x_cl = x.to(memory_format=torch.channels_last).requires_grad_()
    w_cl = weight.to(memory_format=torch.channels_last).requires_grad_()

    def dense() -> None:
        x_cl.grad = w_cl.grad = None  # assigned, not accumulated, as for a layer inside a network
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.conv2d(x_cl, w_cl, stride=stride, padding=padding)
        y.backward(torch.ones_like(y))

    out["masked_dense_ms"] = median_ms(dense, repeats)
    reason = unsupported_reason(module, (shape[2], shape[3]))
    if reason:
        out["sparse_kernels"] = f"not supported: {reason}"
        return out
    plan = build_plan(mask)
    xs = x.bfloat16().requires_grad_()
    ws = weight.clone().requires_grad_()
    dy = torch.ones(shape[0], weight.shape[0], shape[2], shape[3], dtype=torch.bfloat16)

    def forward_only() -> torch.Tensor:
        with torch.no_grad():
            return sparse_conv2d(xs, ws, plan)

    def full() -> None:
        xs.grad = ws.grad = None
        sparse_conv2d(xs, ws, plan).backward(dy)

    def weight_grad_only() -> None:
        ws.grad = None
        sparse_conv2d(xs.detach(), ws, plan).backward(dy)

    def input_grad_only() -> None:
        xs.grad = None
        sparse_conv2d(xs, ws.detach(), plan).backward(dy)

    fwd = median_ms(forward_only, repeats)
    total = median_ms(full, repeats)
    wgrad = max(median_ms(weight_grad_only, repeats) - fwd, 0.0)
    dgrad = max(median_ms(input_grad_only, repeats) - fwd, 0.0)
    flops = 2.0 * plan.nnz * shape[0] * shape[2] * shape[3]  # one product: 2 x active weights x output pixels
    moved = 2 * x.numel() * 2 + weight.numel() * 4  # bf16 activations in and out, weights (float32)
    out.update(
        sparse_ms=total,
        speedup=out["masked_dense_ms"] / total,
        sparse_forward_ms=fwd,
        sparse_input_grad_ms=dgrad,
        sparse_weight_grad_ms=wgrad,
        flops_per_product=flops,
        bytes_per_product=moved,
        gflops_forward=flops / fwd / 1e6 if fwd else None,
        gflops_step=3 * flops / total / 1e6,
        dense_gflops_step=3 * 2.0 * weight.numel() * shape[0] * shape[2] * shape[3] / out["masked_dense_ms"] / 1e6,
    )
    return out


def step_images_per_s(model: str, batch: int, overrides: list[str], batches: int, prepared: str) -> float:
    """Images/s of the real trainer's epoch on static random masks (after a warm-up epoch)."""
    cfg = throughput_config(model, batch, batches, prepared, ["sparsity=static_random", *overrides])
    device = resolve_device("cpu")
    resolve_hardware(cfg, device)
    data = build_data(cfg, device)
    torch.manual_seed(0)
    net = build_model_for(cfg, data.record["num_classes"], device)
    optimizer, schedules = build_optimizer(net, cfg.optim, cfg.train.epochs, cfg.train.update_impl)
    state = TrainState(cfg, net, optimizer, schedules, data.train, data.test, device)
    methods = SPARSITY_METHODS.get(cfg.sparsity.name)(cfg.sparsity, state)
    callbacks = CallbackList([*methods, *attach_sparse_kernels(methods, cfg, device)])
    callbacks.on_train_start(state)
    rates = []
    for epoch in range(3):  # epoch 0 warms up
        state.train_loader.set_epoch(epoch)
        train_epoch(state, callbacks, net)
        if epoch:
            rates.append(state.epoch_log["train_images_per_s"])
    return statistics.fmean(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and batches")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    repeats, batches = (5, 4) if args.quick else (15, 10)
    results: dict[str, Any] = {"models": {}}
    with tempfile.TemporaryDirectory() as prepared:
        for model, batch in MODELS:
            entry: dict[str, Any] = {"batch_size": batch, "layers": {}, "step": {}}
            inputs = layer_inputs(model, batch)
            for scheme in SCHEMES:
                for sparsity in SPARSITIES:
                    key = f"{scheme}@{sparsity}"
                    rows = {name: time_layer(m, s, sparsity, scheme, repeats) for name, (m, s) in inputs.items()}
                    dense = sum(r["masked_dense_ms"] for r in rows.values())
                    sparse = sum(r.get("sparse_ms", r["masked_dense_ms"]) for r in rows.values())
                    entry["layers"][key] = {"per_layer": rows, "masked_dense_ms": dense, "with_kernels_ms": sparse}
                    print(f"{model} {key}: sparse layers fwd+bwd masked dense {dense:.1f} ms, kernels {sparse:.1f} ms "
                          f"({dense / sparse:.2f}x)", flush=True)  # fmt: skip
            base = step_images_per_s(model, batch, ["train.sparse_kernels=off"], batches, prepared)
            entry["step"]["masked_dense_bf16_channels_last"] = base
            nchw = step_images_per_s(
                model, batch, ["train.sparse_kernels=off", "train.channels_last=false"], batches, prepared
            )
            entry["step"]["masked_dense_bf16_nchw"] = nchw
            print(f"{model} step masked dense (bf16): channels_last {base:.1f}, NCHW {nchw:.1f} img/s", flush=True)
            for scheme in SCHEMES:
                for sparsity in SPARSITIES[1:]:
                    common = [f"sparsity.target={sparsity}", f"sparsity.scheme={scheme}", "train.sparse_kernels=on"]
                    row = {}
                    for layout in ("nchw", "channels_last"):
                        cl = "true" if layout == "channels_last" else "false"
                        rate = step_images_per_s(
                            model, batch, [*common, f"train.channels_last={cl}"], batches, prepared
                        )
                        row[f"sparse_kernels_bf16_{layout}"] = rate
                    best = max(row.values())
                    row["speedup_best_vs_masked_dense"] = best / base
                    if scheme == "unstructured":
                        row["target_speedup"] = TARGETS[sparsity]
                        row["target_met"] = best / base >= TARGETS[sparsity]
                    entry["step"][f"{scheme}@{sparsity}"] = row
                    print(f"{model} step {scheme}@{sparsity}: {row}", flush=True)
            results["models"][model] = entry
    results["threshold"] = recommend_threshold(results)
    print(f"lowest sparsity where every supported layer is faster on the kernels: {results['threshold']}")
    results.update(
        benchmark="sparse_kernels",
        claim="whole training step 1.5x / 2x / 3x faster than masked dense at 90 / 95 / 98% unstructured sparsity",
        environment=provenance.collect(resolve_device("cpu")),
        command=" ".join(["python", "benchmarks/sparse_kernels.py", *sys.argv[1:]]),
        repeats=repeats,
        measured_batches=batches,
    )
    atomic.write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


def recommend_threshold(results: dict[str, Any]) -> dict[str, float | None]:
    """Per scheme: the lowest sparsity at which all supported layers of all models are faster."""
    out: dict[str, float | None] = {}
    for scheme in SCHEMES:
        out[scheme] = None
        for sparsity in sorted(SPARSITIES, reverse=True):
            rows = [
                r
                for entry in results["models"].values()
                for r in entry["layers"][f"{scheme}@{sparsity}"]["per_layer"].values()
                if "speedup" in r
            ]
            if rows and all(r["speedup"] > 1.0 for r in rows):
                out[scheme] = sparsity
            else:
                break
    return out


if __name__ == "__main__":
    sys.exit(main())
