"""Is the frozen prefix's forward time gone when training reads cached feature maps? (issue 16)

Claim checked: with the first k blocks frozen, a training step that reads the prefix's maps from the
feature cache is faster than the step that recomputes them by at least 0.9 of the prefix's own
forward time (realised / theoretical saving >= 0.9).

Protocol (the trainer's own pieces, nothing re-implemented): the ``cpu`` profile's model and batch
(ResNet-20, batch 128), precision and memory layout resolved by ``resolve_hardware`` exactly as
``spfde train`` does on this machine (the fastest configuration it offers), synthetic CIFAR-shaped
data of ``--samples`` images. Per setting (frozen blocks k, ``feature_cache.augment``, storage) a real
``FeatureCache`` is built on disk (memory-mapped, as the cpu rows run) and, in interleaved rounds:

- uncached: ``train_epoch`` over ``--batches`` batches of the in-memory loader (image augmentation,
  prefix forward under no_grad, the rest forward and backward, SGD step);
- cached: ``train_epoch`` over the same number of batches of the ``CachedLoader`` (row lookup, read
  and decode from the memory map, map-space augmentation, the rest forward and backward, SGD step);
- prefix: the first k blocks alone on the same batches (eval mode, no_grad, the run's autocast).

Per-batch times, medians over rounds; realised / theoretical = median over rounds of (uncached - cached),
paired within a round, over the median prefix time. The building
pass is timed too (seconds per cached sample, against one prefix forward per sample per view): it
is outside the step, paid once per prefix, and charged by the cost meter as ``feature_cache_build``.

Run:  python benchmarks/feature_cache.py [--quick]   (pin it: python -m spfde_core.pin 0 -- python ...)
Writes results/benchmarks/feature_cache.json (not in --quick mode).

Last measured 2026-12-01, Intel Xeon (AVX-512 + AMX) 2-core machine, PyTorch 2.14.1, bf16 + channels_last,
one thread pinned to core 1, **core 0 idle**; 10,000 cached images, 15 batches of 128 per pass, 15 rounds
(the committed JSON). realised / theoretical, in the order k=3 none fp32, k=5 naive fp32, k=5 similarity
fp32, k=5 similarity fp16, k=8 similarity int8: 0.92 / 1.08 / 1.15 / 0.98 / 1.04: **bar met**. Four
earlier runs the same day had the other core busy (training or CI): 1.24 / 1.22 / 1.07 / 0.77 / 1.03,
0.83 / 1.19 / 1.08 / 1.06 / 1.03, 1.25 / 0.95 / 1.09 / 0.92 / 1.00 and 0.81 / 1.08 / 0.86 / 1.13 / 0.95. 5 of
those 20 values are below 0.9, because the saving (the prefix's 15-44 ms in a 66-190 ms step) is within
a loaded machine's noise. Measure with the other core idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from spfde_core import atomic, provenance
from spfde_core.cli import load_config
from spfde_core.freezing.feature_cache import CachedLoader, FeatureCache
from spfde_core.train.build import build_data, build_model_for, resolve_hardware
from spfde_core.train.callbacks import CallbackList, TrainState
from spfde_core.train.loop import autocast, train_epoch
from spfde_core.train.optim import build_optimizer

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "feature_cache.json"
# (frozen blocks, augment, storage): shallow and deep prefixes, each augmentation rule, each storage.
SETTINGS = [
    (3, "none", "none"),
    (5, "naive", "none"),
    (5, "similarity", "none"),
    (5, "similarity", "fp16"),
    (8, "similarity", "int8"),
]
QUICK_SETTINGS = [(3, "none", "none"), (5, "similarity", "int8")]


def build_state(samples: int, batches: int) -> tuple[TrainState, dict]:
    cfg = load_config(
        [
            "profile=cpu",
            "data=synthetic",
            f"data.synthetic.num_train={samples}",
            "data.synthetic.num_test=256",
            f"train.max_batches_per_epoch={batches}",
            "train.progress=false",
        ]
    )
    device = torch.device("cpu")
    hardware = resolve_hardware(cfg, device)  # the precision and layout `spfde train` would pick here
    data = build_data(cfg, device)
    torch.manual_seed(0)
    model = build_model_for(cfg, data.record["num_classes"], device)
    optimizer, schedules = build_optimizer(model, cfg.optim, cfg.train.epochs, cfg.train.update_impl)
    state = TrainState(cfg, model, optimizer, schedules, data.train, data.test, device, started_at="benchmark")
    return state, hardware


def clocks() -> tuple[float, float]:
    # Wall-clock and this process's CPU time: with one thread and other jobs on the machine, CPU time
    # is not inflated by preemption, so it is the steadier measure of the same work (both are recorded).
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float], n: int) -> tuple[float, float]:
    wall, cpu = clocks()
    return (wall - start[0]) / n, (cpu - start[1]) / n


def epoch_seconds_per_batch(state: TrainState, loader: CachedLoader | None, epoch: int) -> tuple[float, float]:
    """(wall, cpu) seconds per batch of ``train_epoch`` over ``max_batches_per_epoch`` batches."""
    state.epoch = epoch
    state.train_loader.set_epoch(epoch)
    state.epoch_loader = loader
    state.epoch_log = {}
    start = clocks()
    train_epoch(state, CallbackList([]), state.model)
    out = since(start, state.cfg.train.max_batches_per_epoch)
    state.epoch_loader = None
    return out


def prefix_seconds_per_batch(state: TrainState, k: int, epoch: int) -> tuple[float, float]:
    """(wall, cpu) seconds per batch of the first ``k`` blocks alone, as the uncached step runs them."""
    state.train_loader.set_epoch(epoch)
    batches = [b.images for _, b in zip(range(state.cfg.train.max_batches_per_epoch), state.train_loader, strict=False)]
    blocks = state.model.blocks[:k]
    for block in blocks:
        block.eval()  # what the uncached step runs: frozen blocks in eval mode, under no_grad
    start = clocks()
    with torch.no_grad(), autocast(state):
        for x in batches:
            for block in blocks:
                x = block(x)
    out = since(start, len(batches))
    state.model.train()
    return out


def measure(state: TrainState, k: int, augment: str, storage: str, rounds: int, cache_dir: Path) -> dict:
    fc = OmegaConf.merge(
        state.cfg.feature_cache,
        {"store": "disk", "augment": augment, "compression": storage, "budget_bytes": 1 << 40},
    )
    state.model.num_frozen_blocks = k
    cache = FeatureCache(fc, state, [], cache_dir)
    start = time.perf_counter()
    cache._build(state, k)
    build_s = time.perf_counter() - start
    loader = CachedLoader(cache, state)
    epoch_seconds_per_batch(state, None, 0)  # warm-up of both paths
    epoch_seconds_per_batch(state, loader, 0)
    t_u, t_c, t_p = [], [], []
    for r in range(1, rounds + 1):
        t_u.append(epoch_seconds_per_batch(state, None, r))
        t_c.append(epoch_seconds_per_batch(state, loader, r))
        t_p.append(prefix_seconds_per_batch(state, k, r))
    build = cache.builds[-1]
    cache.on_train_end(state)
    state.model.num_frozen_blocks = 0
    row = {
        "frozen_blocks": k,
        "blocks": len(state.model.blocks),
        "augment": augment,
        "storage": build["storage"],
        "map_shape": build["map_shape"],
        "cached_rows": build["samples"],
        "cache_bytes": build["bytes"],
        "build_s": build_s,
        "build_prefix_forwards_per_sample": build["prefix_forwards_per_sample"],
    }
    for i, clock in enumerate(("wall", "cpu")):
        u, c, p = (statistics.median(t[i] for t in ts) for ts in (t_u, t_c, t_p))
        # Paired: each round's uncached and cached passes ran back to back under the same load, so the
        # median of the per-round differences is steadier than the difference of the two medians.
        saved = statistics.median(a[i] - b[i] for a, b in zip(t_u, t_c, strict=True))
        row[clock] = {
            "uncached_step_s": u,
            "cached_step_s": c,
            "prefix_forward_s": p,
            "saved_step_s": saved,
            "realised_over_theoretical": saved / p if p > 0 else None,
            "rounds": {
                "uncached_s": [t[i] for t in t_u],
                "cached_s": [t[i] for t in t_c],
                "prefix_s": [t[i] for t in t_p],
            },
        }
    # The building pass over the prefix forwards it runs, at the step's per-sample prefix time (wall):
    # about 1 means building costs what its forwards cost (eval batches, encoding and disk writes on top).
    per_sample_prefix = row["wall"]["prefix_forward_s"] / state.cfg.train.batch_size
    forwards = build["samples"] * build["prefix_forwards_per_sample"]
    row["build_over_its_prefix_forwards"] = build_s / (forwards * per_sample_prefix)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small and short (a smoke check, not a measurement)")
    parser.add_argument("--samples", type=int, default=None, help="cached training images (default 10000)")
    parser.add_argument("--batches", type=int, default=None, help="batches per timed pass (default 15)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    args = parser.parse_args()
    samples = args.samples or (1024 if args.quick else 10000)
    batches = args.batches or (3 if args.quick else 15)
    rounds = args.rounds or (2 if args.quick else 5)
    state, hardware = build_state(samples, batches)
    rows = []
    with tempfile.TemporaryDirectory(prefix="spfde-feature-cache-bench-") as tmp:
        for k, augment, storage in QUICK_SETTINGS if args.quick else SETTINGS:
            row = measure(state, k, augment, storage, rounds, Path(tmp) / f"k{k}-{augment}-{storage}")
            rows.append(row)
            w, c = row["wall"], row["cpu"]
            print(
                f"k={k} {augment} {row['storage']}: per batch uncached {w['uncached_step_s'] * 1e3:.1f} ms, cached "
                f"{w['cached_step_s'] * 1e3:.1f} ms, prefix {w['prefix_forward_s'] * 1e3:.1f} ms; realised/theoretical "
                f"{w['realised_over_theoretical']:.2f} wall, {c['realised_over_theoretical']:.2f} cpu time; build "
                f"{row['build_s']:.1f} s ({row['build_over_its_prefix_forwards']:.2f}x its prefix forwards), "
                f"{row['cache_bytes'] / 1e6:.0f} MB",
                flush=True,
            )
    # The bar on wall-clock, the quantity that matters; cpu time is recorded beside it (see clocks()).
    ok = all(r["wall"]["realised_over_theoretical"] >= 0.9 for r in rows)
    result = {
        "claim": "realised / theoretical >= 0.9",
        "met": ok,
        "rows": rows,
        "quick": args.quick,
        "protocol": {
            "profile": "cpu",
            "batch": int(state.cfg.train.batch_size),
            "samples": samples,
            "batches": batches,
            "rounds": rounds,
        },
        "hardware": hardware,
        "environment": provenance.collect(torch.device("cpu")),
        "threads": torch.get_num_threads(),
    }
    if not args.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(OUT, result)
    print("claim met" if ok else "claim NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
