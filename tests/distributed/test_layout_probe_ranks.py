"""Under torchrun, train.channels_last=auto is measured by rank 0 alone and every rank trains in its
layout (spfde_core/train/build.py, docs/hardware.md): ranks timing side by side would disturb each
other and could pick different layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_helpers import free_port

from spfde_core.cli import load_config

OVERRIDES = ["model=resnet20", "data=synthetic", "train.precision=fp32"]


def _worker(rank: int, port: int, tmp: str) -> None:
    from spfde_core import layout_probe
    from spfde_core.train.build import resolve_hardware

    os.environ["SPFDE_CACHE_DIR"] = str(Path(tmp) / f"rank{rank}")
    if rank == 1:  # measuring on rank 1 is one of the bugs this test catches

        def measured_on_rank_1(*args: object) -> dict[str, float]:
            raise AssertionError("rank 1 measured the layouts")

        layout_probe.measure = measured_on_rank_1
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        block = resolve_hardware(load_config(OVERRIDES), torch.device("cpu"))
        Path(tmp, f"out{rank}.json").write_text(json.dumps(block["channels_last"]))
    finally:
        dist.destroy_process_group()


def test_every_rank_trains_in_the_layout_rank_0_measured(tmp_path) -> None:
    from spfde_core.train.build import layout_key

    key = layout_key(load_config(OVERRIDES), "fp32")
    # rank 0's cache: NCHW faster; rank 1's cache: channels_last faster (the other bug: ranks disagreeing)
    for rank, (nchw, cl) in ((0, (0.1, 0.2)), (1, (0.2, 0.1))):
        (tmp_path / f"rank{rank}").mkdir()
        entry = {key: {"nchw": nchw, "channels_last": cl}}
        (tmp_path / f"rank{rank}" / "channels_last.json").write_text(json.dumps(entry))
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    out = [json.loads((tmp_path / f"out{rank}.json").read_text()) for rank in (0, 1)]
    assert out[0]["value"] is False and "cached" in out[0]["reason"]
    assert out[1] == out[0]
