"""DDR: the script's removal schedule and counts, least-forgotten first, among the examples presented."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.config import ConfigError
from spfde_core.continual.ddr import count_per_point, least_forgotten, removal_points
from spfde_core.sieving.mest_forgetting import tie_generator
from spfde_core.sieving.tracker import ExampleStats
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


def test_script_schedule_removes_750_at_epochs_5_10_15_20() -> None:
    assert removal_points(5, 20) == [5, 10, 15, 20]
    assert count_per_point(3000, 5, 20) == 750  # 4 x 750 = REMOVE_N = 3000 per task
    assert count_per_point(3000, 5, 22) == int(3000 / 4.4)  # the script's formula, not 3000 / points
    assert removal_points(5, 4) == [] and count_per_point(3000, 5, 4) == 0


def test_least_forgotten_ranks_forgetting_events_never_learned_last_and_skips_unseen() -> None:
    stats = ExampleStats(6)
    # presentations of examples 0..4 (5 never presented): correctness per presentation
    history = {0: [1, 0, 1], 1: [1, 1, 1], 2: [0, 0, 0], 3: [1, 0, 1, 0, 1], 4: [0, 1, 1]}
    for step in range(5):
        idx = torch.tensor([i for i, h in history.items() if step < len(h)])
        correct = torch.tensor([bool(history[i][step]) for i in idx.tolist()])
        stats.update(idx, torch.zeros(len(idx)), correct)
    # scores: 0 -> 1 event, 1 -> 0, 2 -> never learned (= 50), 3 -> 2 events, 4 -> 0
    first = least_forgotten(stats, 50, 3, tie_generator(0, "ddr", 0, 1)).tolist()
    assert set(first[:2]) == {1, 4} and first[2] == 0  # 1 and 4 tie at 0 events: seeded random order
    everything = least_forgotten(stats, 50, 10, tie_generator(0, "ddr", 0, 1)).tolist()
    assert everything == first + [3, 2]  # example 5 was never presented: never removed


def test_ties_do_not_remove_the_tasks_first_class_only() -> None:
    """The prepared data is stored class by class, so index order among tied scores would be class order."""
    stats = ExampleStats(2000)  # one task: class A = 0..999, class B = 1000..1999, each presented once, all correct
    stats.update(torch.arange(2000), torch.zeros(2000), torch.ones(2000, dtype=torch.bool))
    gone = least_forgotten(stats, 5, 750, tie_generator(0, "ddr", 0, 1))
    from_a = int((gone < 1000).sum())
    assert 300 < from_a < 450, from_a  # binomial(750, 1/2) ~ 375 +- 14; by index it would be 750


def test_removed_examples_are_not_trained_again_within_the_task(cl_overrides) -> None:
    seen_after: dict[int, set[int]] = {}

    class Watch:
        def after_step(self, state, step) -> None:
            seen_after.setdefault(state.epoch, set()).update(step.indices.tolist())

    cfg = load_config(
        [
            *cl_overrides,
            "train.epochs=10",  # 2 epochs per task: removal at within-task epoch 1
            "train.max_batches_per_epoch=null",
            "continual.ddr.enabled=true",
            "continual.ddr.every_epochs=1",
            "continual.ddr.until_epoch=1",
            "continual.ddr.remove_per_task=20",
            "train.drop_last=false",
            "continual.replay=none",
        ]
    )
    record = run_training(cfg, extra_callbacks=[Watch()])
    ddr = record["continual_ddr"]
    assert ddr["removed_per_task"] == [20] * 5 and ddr["removed_total"] == 100
    for event in ddr["events"]:
        assert event["epoch"] % 2 == 1  # the second epoch of each task
        task_images = seen_after[event["epoch"] - 1]  # the task's first epoch trains all of its 64 images
        assert len(task_images) == 64
        assert seen_after[event["epoch"]] < task_images and len(seen_after[event["epoch"]]) == 64 - 20


def test_removals_that_would_empty_a_task_are_refused_before_training(cl_overrides) -> None:
    # 64 images per task, batch 16 with drop_last: removing 50 would leave no full batch after the removal
    cfg = load_config(
        [
            *cl_overrides,
            "train.epochs=10",
            "continual.ddr.enabled=true",
            "continual.ddr.every_epochs=1",
            "continual.ddr.until_epoch=1",
            "continual.ddr.remove_per_task=50",
        ]
    )
    started = []

    class Watch:
        def on_train_start(self, state) -> None:
            started.append(True)

    with pytest.raises(ConfigError, match=r"continual\.ddr\.remove_per_task"):
        run_training(cfg, extra_callbacks=[Watch()])
    assert not started
