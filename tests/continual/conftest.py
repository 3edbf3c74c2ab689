"""Overrides for seconds-long continual runs on tiny synthetic data (5 tasks x 2 classes)."""

from __future__ import annotations

import pytest


@pytest.fixture
def cl_overrides(smoke_overrides: list[str]) -> list[str]:
    """5 tasks x 1 epoch of 3 batches of 16 on 320 synthetic images; DER++ with a 40-slot buffer."""
    return [
        *smoke_overrides,
        "continual.name=split",
        "continual.buffer_size=40",
        "train.epochs=5",
        "train.batch_size=16",
        "train.max_batches_per_epoch=3",
        "train.drop_last=true",
        "train.precision=fp32",
        "train.channels_last=false",
        "data.synthetic.num_train=320",
        "data.synthetic.num_test=100",
        "optim.momentum=0",
        "optim.weight_decay=0",
        "optim.schedule=constant",
        "optim.lr=0.03",
    ]


@pytest.fixture(autouse=True)
def _one_thread():
    """These runs are tiny: one intra-op thread is faster than two fighting a loaded machine (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
