"""Is the frozen prefix's forward time gone when training reads cached feature maps? (issue 16)

Claim checked: with the first k blocks frozen, a training step on cached maps (read from the
feature cache's store, decoded, entering the model at block k) is faster than the uncached step
(the prefix run under no_grad) by at least 0.9 of the prefix's own forward time.

Protocol: one model, batch B of random CIFAR-shaped inputs, fp32, eager, this CPU's threads.
Per setting, interleaved repetitions of three timed pieces: the uncached step (forward with the
prefix under no_grad, backward, SGD step), the cached step (a batch gathered from a ``Store`` of
the prefix maps at the given storage, decoded, forward from block k, backward, SGD step) and the
prefix forward alone (eval mode, no_grad). Medians. realised / theoretical = (uncached - cached)
/ prefix. The cache-building pass is not timed here (it is one prefix forward per cached sample,
charged by the cost meter as ``feature_cache_build``).

Run:  python benchmarks/feature_cache.py [--quick]
Writes results/benchmarks/feature_cache.json.

Last measured 2026-11-30, Intel Xeon (AMX) 2-core machine, PyTorch 2.14.1, one thread pinned to one
core while the other core ran a training run or a benchmark, resnet20, batch 64, 9 rounds of 3
repetitions: realised / theoretical 1.00 (k = 4, fp32), 1.34 (k = 7, fp32), 1.14 (fp16), 1.03 (int8):
bar met (the committed JSON). A run two minutes earlier under the same conditions gave 0.92 / 0.96 /
1.17 / 0.86 (int8 below the bar): values above 1 and the spread are the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from spfde_core import atomic, provenance
from spfde_core.cli import load_config
from spfde_core.freezing.feature_cache import Store, int8_scale
from spfde_core.train.build import build_model_for

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "feature_cache.json"


def timed(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def measure(model_name: str, width: float | None, k: int, batch: int, storage: str, rounds: int) -> dict:
    overrides = ["profile=smoke", f"model.name={model_name}", "train.precision=fp32", "train.channels_last=false"]
    if width is not None:
        overrides.append(f"model.width={width}")
    cfg = load_config(overrides)
    torch.manual_seed(0)
    model = build_model_for(cfg, 10, torch.device("cpu"))
    model.num_frozen_blocks = k
    model.train()
    params = [p for b in model.blocks[k:] for p in b.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    with torch.no_grad():
        maps = x
        for block in model.blocks[:k]:
            maps = block(maps)
    rows = 4 * batch
    store = Store(rows, maps.shape[1:], storage, None, int8_scale(maps) if storage == "int8" else None)
    store.write(slice(None), maps.repeat(4, 1, 1, 1))
    idx = torch.randperm(rows)[:batch]

    def uncached() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def cached() -> None:
        m = store.read(idx)
        loss = F.cross_entropy(model(m, start_block=k), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def prefix() -> None:
        with torch.no_grad():
            h = x
            for block in model.blocks[:k]:
                h = block(h)

    for fn in (uncached, cached, prefix):  # warm-up
        fn()
    t_u, t_c, t_p = [], [], []
    for _ in range(rounds):
        t_u.append(timed(uncached, 3))
        t_c.append(timed(cached, 3))
        t_p.append(timed(prefix, 3))
    u, c, p = (statistics.median(t) for t in (t_u, t_c, t_p))
    return {
        "model": model_name,
        "width": width,
        "frozen_blocks": k,
        "blocks": len(model.blocks),
        "batch": batch,
        "storage": storage,
        "uncached_step_s": u,
        "cached_step_s": c,
        "prefix_forward_s": p,
        "realised_over_theoretical": (u - c) / p if p > 0 else None,
        "map_shape": list(maps.shape[1:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke check, not a measurement)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 9
    rows = []
    for k, storage in ((4, "fp32"), (7, "fp32"), (7, "fp16"), (7, "int8")):
        row = measure("resnet20", None, k, 64, storage, rounds)
        rows.append(row)
        print(
            f"k={k} {storage}: uncached {row['uncached_step_s'] * 1e3:.1f} ms, cached {row['cached_step_s'] * 1e3:.1f} "
            f"ms, prefix {row['prefix_forward_s'] * 1e3:.1f} ms, realised/theoretical "
            f"{row['realised_over_theoretical']:.2f}"
        )
    ok = all(r["realised_over_theoretical"] >= 0.9 for r in rows)
    result = {"claim": "realised / theoretical >= 0.9", "met": ok, "rows": rows, "quick": args.quick}
    result["environment"] = provenance.collect(torch.device("cpu"))
    result["threads"] = torch.get_num_threads()
    if not args.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(OUT, result)
    print("claim met" if ok else "claim NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
