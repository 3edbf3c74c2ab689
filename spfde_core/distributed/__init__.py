"""Distributed data-parallel training (torchrun + DDP; NCCL on GPUs, gloo on CPU), kept exact.

``torchrun --nproc_per_node=N -m spfde_core.cli train <overrides>`` runs the ordinary trainer in N
processes; ``run_training`` notices torchrun's environment (``processes.start``: ``Ranks``, or the no-op
``SingleProcess`` stand-in without torchrun) and (docs/distributed.md has the design):

- joins the process group (``context.setup``): NCCL for CUDA runs, gloo on CPU;
- converts BatchNorm to ``SyncBatchNorm2d`` (global-batch statistics, CPU and GPU);
- wraps the model in ``DistributedDataParallel`` (``ddp.wrap``), gradients all-reduced during backward;
- trains each rank on its contiguous piece of every global batch (``TensorLoader.iter_shard``),
  scales the loss so the averaged gradient is the global-batch mean, and gathers the per-sample
  outputs so every rank's callbacks see the same global step (``step``);
- verifies masks, frozen prefix, active set and step agree on all ranks (``consistency``);
- writes records, curves, checkpoints and logs on rank 0 only.
"""

from spfde_core.distributed.batchnorm import SyncBatchNorm2d, convert_batchnorm
from spfde_core.distributed.consistency import RankConsistency, RankDivergenceError
from spfde_core.distributed.context import DistContext, setup, teardown
from spfde_core.distributed.ddp import distributed_block, wrap
from spfde_core.distributed.processes import Processes, Ranks, SingleProcess, start

__all__ = [
    "DistContext",
    "Processes",
    "Ranks",
    "RankConsistency",
    "RankDivergenceError",
    "SingleProcess",
    "SyncBatchNorm2d",
    "convert_batchnorm",
    "distributed_block",
    "setup",
    "start",
    "teardown",
    "wrap",
]
