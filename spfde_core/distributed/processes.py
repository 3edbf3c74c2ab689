"""What a run needs from its process layout, as one interface: one process, or torchrun's ranks.

``run_training`` reads top to bottom without ``if distributed`` branches: ``start`` hands it a
``SingleProcess`` (every step a no-op or the identity, so a single-process run is exactly the plain
trainer) or ``Ranks`` (docs/distributed.md), and it calls the same methods on either.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spfde_core.distributed.batchnorm import convert_batchnorm
from spfde_core.distributed.consistency import RankConsistency
from spfde_core.distributed.context import DistContext, setup, teardown
from spfde_core.distributed.ddp import distributed_block, wrap
from spfde_core.distributed.step import all_reduce_sums, gather_step, global_batch_size, shard_sizes
from spfde_core.train.callbacks import StepOutput


class SingleProcess:
    """The stand-in for one process: it is rank 0, and every distributed step does nothing."""

    is_main = True
    context: DistContext | None = None
    """What the loop and the feature cache shard batches by: None, so they take the plain path."""

    def quiet_others(self, log: logging.Logger) -> None:
        """Other ranks log warnings only (no other ranks here)."""

    def barrier(self) -> None:
        """Wait for every rank (none to wait for)."""

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        yield

    def do_on_main(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on rank 0 only: file writes, deletions."""
        fn(*args)

    def main_callbacks(self, callbacks: Sequence[Any]) -> list[Any]:
        """``callbacks`` on rank 0, [] on the others (I/O without checkpointed state)."""
        return list(callbacks)

    def check_loader(self, loader: Any, data_name: str) -> None:
        """Every loader serves one process."""

    def prepare_model(self, model: nn.Module) -> None:
        """BatchNorm stays per process."""

    def callbacks(self) -> list[Any]:
        return []

    def wrap(self, model: nn.Module, device: torch.device, cfg: Any) -> nn.Module:
        return model

    def record_blocks(self, cfg: Any) -> dict[str, Any]:
        """Blocks for the run record: a single-process record has no ``distributed`` block."""
        return {}

    def side_dir(self, run_dir: Path) -> Path:
        """Where callbacks write the record's side files."""
        return run_dir

    def finish(self, side_dir: Path) -> None:
        """Leave the process group and drop other ranks' side files (nothing to do here)."""

    # The loop's steps (train/loop.py; the partition contract in distributed/step.py).

    def shard(self, loader: Any) -> Any:
        """This process's piece of each of ``loader``'s batches: here the whole batch."""
        return loader

    def backward(self, losses: torch.Tensor, loader: Any, index: int) -> None:
        """Backward of the global batch's mean loss from this process's per-sample ``losses``."""
        losses.mean().backward()

    def gather(self, step: StepOutput, loader: Any, index: int) -> StepOutput:
        """The global batch's outputs from this process's piece: here the piece is the batch."""
        return step

    def sum_over_processes(
        self, loss_sum: torch.Tensor, correct_sum: torch.Tensor, seen: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The evaluation's sums over every process: here this process's."""
        return loss_sum, correct_sum, seen


class Ranks:
    """One of torchrun's processes: rank 0 alone deletes, writes and logs; every rank trains its piece."""

    def __init__(self, context: DistContext) -> None:
        self.context = context
        self.sync_bn_layers = 0

    @property
    def is_main(self) -> bool:
        return self.context.is_main

    def quiet_others(self, log: logging.Logger) -> None:
        if not self.is_main:
            log.setLevel(logging.WARNING)

    def barrier(self) -> None:
        self.context.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        with self.context.main_first():  # e.g. rank 0 generates synthetic data once
            yield

    def do_on_main(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.is_main:
            fn(*args)

    def main_callbacks(self, callbacks: Sequence[Any]) -> list[Any]:
        return list(callbacks) if self.is_main else []

    def check_loader(self, loader: Any, data_name: str) -> None:
        from spfde_core.config import ConfigError

        if not hasattr(loader, "iter_shard"):
            raise ConfigError(f"data={data_name}: its loader cannot be sharded over ranks yet (in-memory only)")

    def prepare_model(self, model: nn.Module) -> None:
        self.sync_bn_layers = convert_batchnorm(model)  # global-batch BN statistics

    def callbacks(self) -> list[Any]:
        return [RankConsistency(self.context)]

    def wrap(self, model: nn.Module, device: torch.device, cfg: Any) -> nn.Module:
        return wrap(model, self.context, device, cfg)

    def record_blocks(self, cfg: Any) -> dict[str, Any]:
        return {"distributed": distributed_block(self.context, cfg, self.sync_bn_layers)}

    def side_dir(self, run_dir: Path) -> Path:
        # Other ranks build the same record (returned, for tests) with side files in a throwaway folder.
        return run_dir if self.is_main else Path(tempfile.mkdtemp(prefix=f"spfde-rank{self.context.rank}-"))

    def finish(self, side_dir: Path) -> None:
        if not self.is_main:
            shutil.rmtree(side_dir, ignore_errors=True)
        teardown(self.context)

    def shard(self, loader: Any) -> Any:
        return loader.iter_shard(self.context.rank, self.context.world_size)

    def backward(self, losses: torch.Tensor, loader: Any, index: int) -> None:
        world_size = self.context.world_size
        sizes = shard_sizes(global_batch_size(loader, index), world_size)
        (losses.sum() * (world_size / sum(sizes))).backward()  # DDP divides by world_size

    def gather(self, step: StepOutput, loader: Any, index: int) -> StepOutput:
        # The global batch, in single-process order, identical on every rank.
        return gather_step(step, shard_sizes(global_batch_size(loader, index), self.context.world_size))

    def sum_over_processes(
        self, loss_sum: torch.Tensor, correct_sum: torch.Tensor, seen: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        loss_sum, correct_sum, total = all_reduce_sums(loss_sum, correct_sum, torch.tensor(seen))
        return loss_sum, correct_sum, int(total.item())


Processes = SingleProcess | Ranks


def start(device: torch.device) -> tuple[Processes, torch.device]:
    """Join torchrun's process group if there is one (``context.setup``); the layout and this rank's device."""
    context, device = setup(device)
    return (SingleProcess() if context is None else Ranks(context)), device
