"""Helpers of the distributed tests: a probe callback, and 2-process runs through torch.multiprocessing.spawn.

Each spawned worker sets torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and calls ``run_training`` exactly as ``python -m spfde_core.cli train``
under torchrun does; its record and probe are saved to ``out/rank<r>.pt`` for the test to compare.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch

from spfde_core.distributed.context import tensor_digest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _masks(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b for n, b in model.named_buffers() if n.endswith("weight_mask")]


class Probe:
    """Records, per rank: the local batch pieces, the global steps, masks after every step, frozen
    blocks per step, the active set per epoch; and the final model state."""

    def __init__(self, kill_at: tuple[int, int] | None = None) -> None:
        self.kill_at = kill_at  # (epoch, batch): raise there, like a killed process
        self.local: dict[int, list[list[int]]] = {}  # epoch -> per step: this rank's sample indices
        self.global_steps: dict[int, list[list[int]]] = {}  # epoch -> per step: gathered indices
        self.active: dict[int, list[int]] = {}
        self.frozen_per_step: list[tuple[int, int]] = []  # (step, num_frozen_blocks)
        self.mask_digests: list[tuple[int, str]] = []  # (step, digest) after every step's mask updates
        self._batch = 0

    def on_epoch_start(self, state: Any) -> None:
        loader = state.train_loader
        n = loader._images.shape[0]
        self.active[state.epoch] = (torch.arange(n) if loader._active is None else loader._active).tolist()
        self.local[state.epoch], self.global_steps[state.epoch] = [], []
        self._batch = 0

    def on_batch_start(self, state: Any, batch: Any) -> None:
        if self.kill_at == (state.epoch, self._batch):
            raise KeyboardInterrupt("killed by the probe")
        self._batch += 1
        self.local[state.epoch].append(batch.indices.tolist())
        self.frozen_per_step.append((state.step, int(state.model.num_frozen_blocks)))

    def after_step(self, state: Any, step: Any) -> None:
        self.global_steps[state.epoch].append(step.indices.tolist())
        self.mask_digests.append((state.step, tensor_digest(_masks(state.model))))

    def on_train_end(self, state: Any) -> None:
        self.final_state = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}

    def result(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return out


def worker(
    rank: int, world_size: int, port: int, overrides: list[str], out_dir: str, kill_at: Any, rank_overrides: Any
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    from spfde_core.cli import load_config
    from spfde_core.train.run import run_training

    probe = Probe(kill_at)
    out = Path(out_dir) / f"rank{rank}.pt"
    try:
        cfg = load_config([*overrides, *(rank_overrides or {}).get(rank, [])])
        record = run_training(cfg, extra_callbacks=[probe])
    except KeyboardInterrupt:
        torch.save({"killed": True, "probe": probe.result()}, out)
        os._exit(0)  # like a killed process: no clean shutdown of the process group
    torch.save({"record": record, "probe": probe.result()}, out)


def spawn_run(
    overrides: list[str],
    out_dir: Path,
    world_size: int = 2,
    kill_at: tuple[int, int] | None = None,
    rank_overrides: dict[int, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Train ``overrides`` on ``world_size`` gloo ranks; return every rank's {record, probe}.

    ``rank_overrides`` adds overrides for some ranks only (non-semantic ones, e.g. another results
    folder, to show a rank writes nothing: the config hash, hence the run, stays the same)."""
    import torch.multiprocessing as mp

    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(
        worker,
        args=(world_size, free_port(), overrides, str(out_dir), kill_at, rank_overrides),
        nprocs=world_size,
        join=True,
    )
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def single_run(overrides: list[str], kill_at: tuple[int, int] | None = None) -> dict[str, Any]:
    """The same configuration in this process, single-process (the reference)."""
    from spfde_core.cli import load_config
    from spfde_core.train.run import run_training

    probe = Probe(kill_at)
    record = run_training(load_config(overrides), extra_callbacks=[probe])
    return {"record": record, "probe": probe.result()}
