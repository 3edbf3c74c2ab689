"""The process group of a distributed run: started from torchrun's environment, one per process.

``torchrun --nproc_per_node=N -m spfde_core.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in every worker; ``run_training`` calls
:func:`setup` which initialises the default process group from them (NCCL when the run trains on
CUDA, gloo on CPU). Without those variables, or with ``WORLD_SIZE=1``, nothing is initialised and
the run is the plain single-process one, bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Who this process is in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    owns_group: bool
    """This process group was started by ``setup`` (and is destroyed by ``teardown``)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes records, curves, checkpoints and logs progress."""
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the body first (e.g. preparing a dataset), the others after it finished."""
        if not self.is_main:
            dist.barrier()
        try:
            yield
        finally:
            if self.is_main:
                dist.barrier()

    def gather_objects(self, value: object) -> list[object]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        values: list[object] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[DistContext | None, torch.device]:
    """Join the process group torchrun describes; return (context or None, this rank's device).

    On CUDA every rank takes ``cuda:LOCAL_RANK``. An already initialised default group (e.g. one a
    test or an embedding program started) is used as is.
    """
    if not dist.is_available():
        return None, device
    if dist.is_initialized():
        owns = False
    elif env_world_size() > 1:
        owns = True
    else:
        return None, device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() == 1:
        return None, device
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), owns)
    return ctx, device


def teardown(ctx: DistContext | None) -> None:
    if ctx is not None and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def tensor_digest(tensors: list[torch.Tensor]) -> str:
    """sha256 of the tensors' bytes, in order (masks, active sets): equal iff bitwise equal."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
