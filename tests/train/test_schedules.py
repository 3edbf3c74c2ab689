"""LR schedules agree with torch's own schedulers and per-group schedules are applied."""

from __future__ import annotations

import pytest
import torch

from spfde_core.train.optim import apply_schedules
from spfde_core.train.schedules import LRSchedule


def test_cosine_matches_torch_cosine_annealing_per_epoch() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=160, eta_min=4e-8)
    ours = LRSchedule(0.1, "cosine", total_epochs=160, min_lr=4e-8)
    for epoch in range(160):
        assert ours(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        ref.step()


def test_multistep_matches_torch() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[80, 120], gamma=0.1)
    ours = LRSchedule(0.1, "multistep", milestones=(80, 120), gamma=0.1)
    for epoch in range(160):
        assert ours(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        ref.step()


def test_warmup_is_linear_then_joins_the_schedule() -> None:
    s = LRSchedule(0.2, "cosine", total_epochs=10, warmup_epochs=2)
    assert s(0) == 0 and s(1) == pytest.approx(0.1) and s(2) == pytest.approx(0.2)
    assert s(10) == pytest.approx(0.0, abs=1e-12)


def test_ending_at_compresses_a_block_schedule() -> None:
    s = LRSchedule(0.1, "cosine", total_epochs=160).ending_at(40)
    assert s(20) == pytest.approx(0.05) and s(40) == pytest.approx(0.0, abs=1e-12)
    assert s(100) == pytest.approx(0.0, abs=1e-12)  # stays at the floor after its end


def test_each_group_gets_its_own_schedule() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}], lr=1.0)
    full = LRSchedule(0.1, "cosine", total_epochs=100)
    apply_schedules(opt, [full.ending_at(50), full], 25)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[1]["lr"] == pytest.approx(full(25))
