"""Unit tests without processes: the loader's rank pieces, the gathered-step sizes, SyncBatchNorm2d outside a group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spfde_core.data import TensorLoader
from spfde_core.distributed import SyncBatchNorm2d, convert_batchnorm
from spfde_core.distributed.step import global_batch_size, shard_sizes


def _loader(n: int, batch: int, drop_last: bool = False) -> TensorLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorLoader(
        images, labels, num_classes=10, batch_size=batch, mean=(0.5,) * 3, std=(0.25,) * 3, train=True,
        seed=3, drop_last=drop_last, pad=2,
    )  # fmt: skip


@pytest.mark.parametrize(("n", "batch", "world", "drop_last"), [(50, 8, 2, False), (50, 8, 3, True), (10, 4, 3, False)])
def test_rank_pieces_partition_every_batch_with_single_process_augmentation(n, batch, world, drop_last) -> None:
    loader = _loader(n, batch, drop_last)
    loader.set_active(torch.arange(1, n, 2 if n > 10 else 1))  # a sieved subset (or all)
    loader.set_epoch(2)
    whole = list(loader)
    pieces = [list(loader.iter_shard(r, world)) for r in range(world)]
    assert all(len(p) == len(whole) == len(loader) for p in pieces)
    for i, full in enumerate(whole):
        parts = [p[i] for p in pieces]
        assert [len(b.indices) for b in parts] == shard_sizes(len(full.indices), world)
        assert global_batch_size(loader, i) == len(full.indices)
        assert torch.equal(torch.cat([b.indices for b in parts]), full.indices)
        assert torch.equal(torch.cat([b.images for b in parts]), full.images)  # same crops and flips
        assert torch.equal(torch.cat([b.labels for b in parts]), full.labels)


def test_a_piece_may_be_empty_when_the_last_batch_is_smaller_than_the_world() -> None:
    loader = _loader(9, 4)  # batches of 4, 4, 1
    sizes = [[len(b.indices) for b in loader.iter_shard(r, 3)] for r in range(3)]
    assert sizes == [[1, 1, 0], [1, 1, 0], [2, 2, 1]]
    with pytest.raises(ValueError, match="rank"):
        loader.iter_shard(3, 3)


def test_sync_batchnorm_is_batchnorm_outside_a_process_group_and_keeps_tensors() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    x = torch.randn(5, 3, 6, 6)
    reference = model(x)
    torch.manual_seed(0)
    same = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    assert convert_batchnorm(same) == 2 and convert_batchnorm(model) == 2
    assert isinstance(model[1], SyncBatchNorm2d) and isinstance(model[1], nn.BatchNorm2d)
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert torch.equal(same(x), reference)
