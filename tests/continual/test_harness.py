"""The harness on the trainer: task data, the logit mask in the real loop, replay, records, config errors."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.config import ConfigError, validate
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke


def test_each_task_trains_its_classes_with_other_task_logits_masked(cl_overrides) -> None:
    """With replay off, the classifier rows of other tasks' classes get exactly zero gradient."""
    checked = []

    class Watch:
        def on_batch_start(self, state, batch) -> None:
            self.labels = batch.labels

        def after_backward(self, state, batch) -> None:
            task = state.epoch  # one epoch per task
            assert set(batch.labels.tolist()) <= {2 * task, 2 * task + 1}
            head = state.model.prunable_layers()[-1].module
            other = [c for c in range(10) if c // 2 != task]
            assert (head.weight.grad[other] == 0).all() and (head.bias.grad[other] == 0).all()
            assert head.weight.grad[[2 * task, 2 * task + 1]].abs().sum() > 0
            checked.append(task)

    record = run_training(load_config([*cl_overrides, "continual.replay=none"]), extra_callbacks=[Watch()])
    assert sorted(set(checked)) == [0, 1, 2, 3, 4]
    block = record["continual"]
    assert len(block["acc_matrix"]) == 5 and block["steps_with_replay"] == 0
    assert record["results"]["final_top1"] == pytest.approx(block["final_avg_acc"])  # class-IL: all 10 classes


def test_derpp_replays_two_buffer_batches_from_the_second_task_on(cl_overrides) -> None:
    grads = {}

    class Watch:
        def after_backward(self, state, batch) -> None:
            head = state.model.prunable_layers()[-1].module
            grads[state.epoch] = head.weight.grad[8:].abs().sum().item()  # task 4's classes

    record = run_training(load_config(cl_overrides), extra_callbacks=[Watch()])
    block = record["continual"]
    # 4 tasks x 3 steps with replay, each 2 buffer batches of 16: DER++'s extra passes, counted
    assert block["steps_with_replay"] == 12 and block["buffer_samples_trained"] == 12 * 2 * 16
    assert grads[0] == 0 and grads[1] > 0  # task 1's gradient reaches other classes only through the buffer
    assert block["choices"]["replay_passes_per_step"] == 2
    recipe = block["choices"]["optimizer_recipe"]  # the run's own optimiser, and what the script really runs
    cfg = load_config(cl_overrides)
    assert recipe.startswith(f"SGD lr {cfg.optim.lr}, momentum {cfg.optim.momentum},") and "scheduler=None" in recipe
    assert 0 <= block["final_forgetting"] <= 1 and len(block["til_acc_matrix"][4]) == 5


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.epochs=7", "train.epochs"),
        ("continual.replay=gem", "continual.replay"),
        ("sieving=mest_forgetting", "sieving.name"),
        ("continual.dgm.sparsity=1.5", "continual.dgm.sparsity"),
        ("continual.ddr.until_epoch=3 continual.ddr.enabled=true", "continual.ddr.until_epoch"),
        ("train.epochs=25 continual.ddr.until_epoch=4 continual.ddr.enabled=true", "continual.ddr.until_epoch"),
    ],
)
def test_bad_continual_config_is_refused_naming_the_field(cl_overrides, override: str, field: str) -> None:
    cfg = load_config([*cl_overrides, *override.split()])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(cfg)


def test_classes_that_do_not_split_are_refused_before_training(cl_overrides) -> None:
    cfg = load_config([*cl_overrides, "continual.num_tasks=5", "data.synthetic.num_classes=8"])
    with pytest.raises(ConfigError, match="continual.num_tasks"):
        run_training(cfg)
    assert torch.get_num_threads() == 1


def test_task_il_setting_makes_task_il_accuracy_the_headline(cl_overrides) -> None:
    record = run_training(load_config([*cl_overrides, "continual.setting=task_il", "continual.replay=er"]))
    block = record["continual"]
    assert record["results"]["final_top1"] == pytest.approx(block["final_til_avg_acc"])
    # task-IL picks among 2 classes, class-IL among 10: never lower on the same model
    assert all(t >= c for t, c in zip(block["til_acc_matrix"][-1], block["acc_matrix"][-1], strict=True))
