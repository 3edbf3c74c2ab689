"""Analysis tests run torch single-threaded: on the shared 2-core machines, two intra-op threads
competing with other jobs made the smoke runs 10x slower (measured: 34 s instead of 2 s)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
