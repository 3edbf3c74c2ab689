"""``ImageFolderStreamLoader.iter_shard``: each rank's piece of every global batch (DDP), on a tiny JPEG tree."""

from __future__ import annotations

import pytest
import torch

from spfde_core.data import ImageFolderStreamLoader, prepare_dataset

CLASSES = {"train": ["a", "b", "c"], "val": ["a", "b", "c"]}


@pytest.fixture
def index_dir(jpeg_tree, tmp_path):
    root = jpeg_tree(CLASSES, per_class=4, size=32, top="imagenet-mini")  # 12 train, 12 val images
    return prepare_dataset("imagenet", path=str(root), out_dir=tmp_path / "prepared")


def make(index_dir, split="train", train=True, **kw):
    return ImageFolderStreamLoader(index_dir, split, **{"batch_size": 5, "train": train, "image_size": 16, **kw})


def check_pieces_partition_the_pass(loader, world: int) -> None:
    """Rank pieces, concatenated in rank order, are the single-process batches (same crops and flips)."""
    whole = [tuple(t.clone() for t in b) for b in loader]
    pieces = [[tuple(t.clone() for t in b) for b in loader.iter_shard(r, world)] for r in range(world)]
    assert all(len(p) == len(whole) == len(loader) for p in pieces)  # one step per global batch on every rank
    for i, batch in enumerate(whole):
        for k in range(3):  # images, labels, indices
            assert torch.equal(torch.cat([pieces[r][i][k] for r in range(world)]), batch[k])
        sizes = [len(pieces[r][i][2]) for r in range(world)]
        b = len(batch[2])
        assert sizes == [b * (r + 1) // world - b * r // world for r in range(world)]  # shard_bounds
    seen = torch.cat([b[2] for p in pieces for b in p])
    assert len(seen) == len(set(seen.tolist())) == loader.num_samples - (loader.num_samples % 5) * loader.drop_last


@pytest.mark.parametrize(("world", "drop_last"), [(2, False), (3, False), (2, True)])
def test_train_pieces_partition_every_batch_with_single_process_augmentation(index_dir, world, drop_last) -> None:
    loader = make(index_dir, num_workers=0, drop_last=drop_last)
    loader.set_epoch(3)
    check_pieces_partition_the_pass(loader, world)


def test_eval_pieces_and_an_active_subset_with_decoding_workers(index_dir) -> None:
    test = make(index_dir, "val", train=False, num_workers=0)
    check_pieces_partition_the_pass(test, 2)
    train = make(index_dir, num_workers=2)
    train.set_active(torch.tensor([0, 2, 3, 5, 7, 8, 9, 11]))  # 8 active: batches of 5 and 3
    train.set_epoch(1)
    check_pieces_partition_the_pass(train, 2)


def test_a_piece_is_empty_when_the_last_batch_is_smaller_than_the_world(index_dir) -> None:
    loader = make(index_dir, batch_size=10, num_workers=0, channels_last=True)  # batches of 10 and 2
    last = [list(loader.iter_shard(r, 4))[-1] for r in range(4)]
    assert [len(b.indices) for b in last] == [0, 1, 0, 1]
    assert last[0].images.shape == (0, 3, 16, 16) and last[0].labels.dtype == torch.int64
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\), got 2"):
        loader.iter_shard(2, 2)
