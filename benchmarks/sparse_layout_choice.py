"""Does ``train.channels_last=auto`` pick the faster layout for a sparse run on the kernels? (issue 19)

Claim checked: since the layout probe times a sparse run both masked and on the sparse kernels
(spfde_core/layout_probe.py, docs/hardware.md "Sparse runs"), a run with every setting ``auto``
(precision, layout, ``train.sparse_kernels``) trains in the layout whose whole step is faster; before,
the probe timed the dense model only and picked channels_last under AVX2, where the kernels ran 1.4x
faster in NCHW (benchmarks/sparse_kernels.py, 2026-11-30: ``auto`` 61.2 vs ``on`` NCHW 83.4 img/s
at 90%).

Protocol, per ISA class (``--isa native|avx2|both``, as benchmarks/sparse_kernels.py) and sparsity:
fresh probe caches; the real trainer's epoch on static random masks (sparse_kernels.step_images_per_s:
images/s over two epochs of ``--batches`` batches after a warm-up epoch); the layout ``auto`` chose,
with the probe's four times; the step with everything ``auto``; the same with the other layout forced
(kernels and precision still ``auto``); and the best dense configuration of the class as the baseline
(every dense mode of sparse_kernels.dense_modes, kernels off). One thread (``--threads``, default 1).

Run:  python benchmarks/sparse_layout_choice.py [--isa both] [--models resnet32_w2] [--sparsities 0.9,0.95,0.98]
Writes results/benchmarks/sparse_layout_choice.json keyed by ISA class.

Last measured 2026-12-01, 2-core Intel Xeon (AMX), torch 2.14.1, one thread pinned to core 1 while core 0
trained a claims-campaign run (load average 2.0), resnet32_w2 batch 64, 10 batches a timed epoch, n = 1
run per class. Outcome: ``auto`` chose the faster layout in 6 of 6 cases. amx: channels_last at 90 / 95%
(kernels slower there), NCHW with the kernels at 98% (199 vs 157 img/s channels_last); 1.05x / 1.10x /
1.08x the best dense (bf16 channels_last, 184 img/s). avx2 (emulated): NCHW at all three, 96 / 118 /
129 img/s (channels_last forced 80 / 98 / 103), 2.59x / 3.18x / 3.46x the best dense (fp32 NCHW,
37 img/s); the dense-only probe of before chose channels_last (2.01x / 1.90x / 2.68x then).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from bench_config import throughput_config
from isa_classes import add_isa_argument, run_classes
from sparse_kernels import MODELS, dense_modes, step_images_per_s

from spfde_core import atomic, layout_probe, provenance
from spfde_core.train.build import resolve_device, resolve_hardware

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "sparse_layout_choice.json"
AUTO = ["train.sparse_kernels=auto", "train.precision=auto"]


def measure_model(model: str, batch: int, batches: int, sparsities: list[float], prepared: str) -> dict[str, Any]:
    dense: dict[str, float] = {}
    for mode, (dtype, channels_last) in dense_modes().items():
        overrides = [
            "train.sparse_kernels=off",
            f"train.precision={'bf16' if dtype else 'fp32'}",
            f"train.channels_last={str(channels_last).lower()}",
        ]
        dense[mode], _ = step_images_per_s(model, batch, overrides, batches, prepared)
        print(f"{model} dense {mode}: {dense[mode]:.1f} img/s", flush=True)
    best = max(dense, key=dense.__getitem__)
    entry: dict[str, Any] = {"batch": batch, "dense_images_per_s": dense, "dense_best_mode": best}
    for sparsity in sparsities:
        common = [f"sparsity.target={sparsity}", "sparsity.scheme=unstructured", *AUTO]
        cfg = throughput_config(model, batch, batches, prepared, ["sparsity=static_random", *common])
        choice = resolve_hardware(cfg, resolve_device("cpu"))["channels_last"]  # measures, then cached
        probe = json.loads(layout_probe.cache_path().read_text())
        (times,) = [v for k, v in probe.items() if f"| {model} width" in k and k.endswith(f" {sparsity}")]
        chosen = "channels_last" if choice["value"] else "nchw"
        other = "nchw" if choice["value"] else "channels_last"
        auto, _ = step_images_per_s(model, batch, [*common, "train.channels_last=auto"], batches, prepared)
        forced = f"train.channels_last={'false' if choice['value'] else 'true'}"
        alternative, _ = step_images_per_s(model, batch, [*common, forced], batches, prepared)
        row = {
            "probe_step_s": times,
            "auto_layout": chosen,
            "auto_reason": choice["reason"],
            "auto_images_per_s": auto,
            f"{other}_forced_images_per_s": alternative,
            "auto_was_faster": auto >= alternative,
            "auto_speedup_vs_best_dense": auto / dense[best],
        }
        entry[f"unstructured@{sparsity}"] = row
        print(f"{model} {sparsity}: {row}", flush=True)
    return entry


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    os.environ["SPFDE_CACHE_DIR"] = tempfile.mkdtemp(prefix="spfde-probe-cache-")  # every probe measures afresh
    entry: dict[str, Any] = {"threads": torch.get_num_threads(), "batches_per_epoch": args.batches, "models": {}}
    with tempfile.TemporaryDirectory() as prepared:
        for model, batch in MODELS:
            if model in args.models:
                entry["models"][model] = measure_model(model, batch, args.batches, args.sparsities, prepared)
    entry["environment"] = provenance.collect(resolve_device("cpu"))
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=lambda t: t.split(","), default=["resnet32_w2"])
    parser.add_argument("--sparsities", type=lambda t: [float(x) for x in t.split(",")], default=[0.9, 0.95, 0.98])
    parser.add_argument("--batches", type=int, default=10, help="batches per timed epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    add_isa_argument(parser)
    args = parser.parse_args()
    child = ["--models", ",".join(args.models), "--sparsities", ",".join(map(str, args.sparsities))]
    child += ["--batches", str(args.batches), "--threads", str(args.threads)]
    result = run_classes(args, __file__, lambda: measure(args), args.out, child)
    result.update(
        benchmark="sparse_layout_choice",
        claim="train.channels_last=auto trains a sparse run in the layout whose whole step is faster (issue 19)",
    )
    atomic.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
