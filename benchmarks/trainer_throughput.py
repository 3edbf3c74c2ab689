"""Training throughput of the trainer per precision x layout mode, on each CPU class (issue 12).

Checks (issue 12): on each ISA class the mode that ``train.precision=auto train.channels_last=auto``
resolves to is within 5% of the fastest mode, for ResNet-20 at batch 128 (the ``cpu`` profile),
``resnet32_w2`` at batch 64 (the ``paper`` profile) and the quarter-width ResNet-20 at batch 32 of
the ``smoke`` profile; and the smoke profile trains end to end in seconds (``smoke_profile_s``,
one ``spfde train profile=smoke`` process, imports included). Modes: bf16 autocast or fp32, times
channels_last or NCHW, eager (``--compile`` adds torch.compile variants). Images/s of the real
trainer's epoch function on synthetic CIFAR-shaped data, after a warm-up pass; each repeat runs
``--batches`` batches or fewer, so that it lasts about ``--seconds`` (bf16 emulated on AVX2 is 10x
slower than fp32 there). ``--isa both`` (default) measures natively and in a child process under
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``; results/benchmarks/trainer_throughput.json
holds one entry per ISA class, with the CPU, flags and library versions.

Last measured: see results/README.md (hardware, versions, numbers and outcome).

Run:  python benchmarks/trainer_throughput.py [--quick] [--compile] [--isa both|native|avx2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_config import throughput_config
from isa_classes import add_isa_argument, run_classes

from spfde_core import atomic, hardware, provenance
from spfde_core.models import build_model
from spfde_core.train.build import build_data, build_model_for, resolve_device, resolve_hardware
from spfde_core.train.callbacks import CallbackList, TrainState
from spfde_core.train.loop import train_epoch
from spfde_core.train.optim import build_optimizer

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "trainer_throughput.json"
MODES = {
    "bf16_cl": ["train.precision=bf16", "train.channels_last=true"],
    "bf16_nchw": ["train.precision=bf16", "train.channels_last=false"],
    "fp32_cl": ["train.precision=fp32", "train.channels_last=true"],
    "fp32_nchw": ["train.precision=fp32", "train.channels_last=false"],
}
# (label, model, width override, batch): the models of the cpu, paper and smoke profiles
MODELS = (
    ("resnet20", "resnet20", None, 128),
    ("resnet32_w2", "resnet32_w2", None, 64),
    ("smoke_resnet20_w0.25", "resnet20", 0.25, 32),
)
WITHIN = 0.95  # auto must reach 95% of the fastest mode's images/s


def mode_images_per_s(
    model: str,
    width: float | None,
    batch: int,
    overrides: list[str],
    batches: int,
    seconds: float,
    tmp: str,
) -> Callable[[int], float]:
    """A function timing one repeat (images/s of the real trainer epoch function) of this mode, after
    a warm-up pass of 2 batches; repeats of all modes are interleaved by the caller, so that a slow
    phase of a shared host hits every mode alike."""
    extra = [] if width is None else [f"model.width={width}"]
    cfg = throughput_config(model, batch, batches, tmp, [*extra, *overrides])
    device = resolve_device("cpu")
    resolve_hardware(cfg, device)
    data = build_data(cfg, device)
    torch.manual_seed(0)
    net = build_model_for(cfg, data.record["num_classes"], device)
    optimizer, schedules = build_optimizer(net, cfg.optim, cfg.train.epochs)
    state = TrainState(cfg, net, optimizer, schedules, data.train, data.test, device)
    forward = torch.compile(net) if cfg.train.compile else net
    callbacks = CallbackList([])
    cfg.train.max_batches_per_epoch = 2
    start = time.perf_counter()
    train_epoch(state, callbacks, forward)  # warm-up: oneDNN primitives (and compilation)
    per_batch = (time.perf_counter() - start) / 2
    cfg.train.max_batches_per_epoch = max(2, min(batches, round(seconds / max(per_batch, 1e-3))))

    def repeat(r: int) -> float:
        state.train_loader.set_epoch(r + 1)
        train_epoch(state, callbacks, forward)
        return state.epoch_log["train_images_per_s"]

    return repeat


def smoke_profile_seconds(tmp: str) -> float:
    """Wall-clock of one `spfde train profile=smoke` process (defaults: auto precision and layout)."""
    cmd = [sys.executable, "-m", "spfde_core.cli", "train", "profile=smoke", "train.progress=false"]
    cmd += [f"run.results_dir={tmp}/runs", f"run.checkpoint_dir={tmp}/ck", f"data.prepared_dir={tmp}/data"]
    subprocess.run([*cmd[:4], "profile=smoke", "train.epochs=1", "run.row=warm", *cmd[5:]], check=True)  # data
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


UNSAFE = "hangs oneDNN's AVX2 weight-gradient kernel (narrow strided 1x1 conv in channels_last, docs/hardware.md)"


def unsafe_channels_last(model: str, width: float | None) -> bool:
    """channels_last with a convolution narrower than 8 input channels under oneDNN's AVX2 kernels: it hangs."""
    if hardware.cpu_isa().isa_class not in ("avx2", "generic"):
        return False
    with torch.device("meta"):
        narrowest = hardware.narrowest_conv_width(build_model(model, 10, width=width))
    return narrowest is not None and narrowest < 8


def auto_mode(model: str, width: float | None, batch: int, tmp: str) -> tuple[str, dict[str, str]]:
    """The mode `auto` resolves to here, and why: the trainer's own resolution, layout probe included
    (measured afresh: the benchmark's cache folder is its temporary one)."""
    extra = [] if width is None else [f"model.width={width}"]
    cfg = throughput_config(model, batch, 2, tmp, extra)
    block = resolve_hardware(cfg, torch.device("cpu"))
    name = f"{cfg.train.precision}_{'cl' if cfg.train.channels_last else 'nchw'}"
    return name, {key: value["reason"] for key, value in block.items()}


def measure(args: argparse.Namespace) -> dict:
    modes = dict(MODES)
    if args.compile:
        modes.update({f"{k}_compile": [*v, "train.compile=true"] for k, v in MODES.items()})
    batches, repeats = (6, 2) if args.quick else (30, 3)
    entry: dict = {"models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SPFDE_CACHE_DIR"] = tmp  # the layout probe measures afresh
        for label, model, width, batch in MODELS:
            result: dict = {"batch_size": batch, "width": width, "modes": {}}
            runners = {}
            for mode, overrides in modes.items():
                if "train.channels_last=true" in overrides and unsafe_channels_last(model, width):
                    result["skipped_modes"] = {**result.get("skipped_modes", {}), mode: UNSAFE}
                    print(f"{label:22s} bs{batch:<4d} {mode:18s} skipped: {UNSAFE}", flush=True)
                    continue
                runners[mode] = mode_images_per_s(model, width, batch, overrides, batches, args.seconds, tmp)
            rates: dict[str, list[float]] = {mode: [] for mode in runners}
            for r in range(repeats):  # interleaved: mode A, B, C, D, A, B, ...
                for mode, run_repeat in runners.items():
                    rates[mode].append(run_repeat(r))
            for mode, mode_rates in rates.items():
                result["modes"][mode] = {
                    "images_per_s_median": statistics.median(mode_rates),
                    "images_per_s_mean": statistics.fmean(mode_rates),
                    "images_per_s_std": statistics.stdev(mode_rates) if len(mode_rates) > 1 else 0.0,
                    "repeats": mode_rates,
                }
                print(f"{label:22s} bs{batch:<4d} {mode:18s} {statistics.median(mode_rates):8.1f} img/s", flush=True)
            chosen, why = auto_mode(model, width, batch, tmp)
            fastest = max(result["modes"], key=lambda m: result["modes"][m]["images_per_s_median"])
            ratio = result["modes"][chosen]["images_per_s_median"] / result["modes"][fastest]["images_per_s_median"]
            result.update(auto_mode=chosen, auto_reason=why, fastest_mode=fastest, auto_vs_fastest=ratio)
            result["auto_within_5pct"] = ratio >= WITHIN
            print(f"{label:22s} auto={chosen} fastest={fastest} auto/fastest={ratio:.3f}", flush=True)
            entry["models"][label] = result
        entry["smoke_profile_s"] = smoke_profile_seconds(tmp)
        print(f"smoke profile: {entry['smoke_profile_s']:.1f} s", flush=True)
    entry.update(
        target_met=all(m["auto_within_5pct"] for m in entry["models"].values()),
        batches_cap=batches,
        seconds_per_repeat=args.seconds,
        repeats=repeats,
        environment=provenance.collect(torch.device("cpu")),
        command=" ".join(["python", "benchmarks/trainer_throughput.py", *sys.argv[1:]]),
    )
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile variant of every mode")
    parser.add_argument("--seconds", type=float, default=8.0, help="about this long per repeat (default 8)")
    parser.add_argument("--out", type=Path, default=OUT)
    add_isa_argument(parser)
    args = parser.parse_args()
    child = [*(["--quick"] if args.quick else []), *(["--compile"] if args.compile else [])]
    child += ["--seconds", str(args.seconds)]
    result = run_classes(args, __file__, lambda: measure(args), args.out, child)
    result.update(
        benchmark="trainer_throughput",
        claim="on each ISA class, train.precision/channels_last=auto is within 5% of the fastest mode",
    )
    atomic.write_json(args.out, result)
    met = {cls: e["target_met"] for cls, e in result["by_isa_class"].items()}
    print(f"wrote {args.out}; auto within 5% of the fastest mode: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
