"""Per-task evaluation, average accuracy and average forgetting, as SparCL's script computes them.

``evaluate`` in ``main_sparse_train_w_data_gradient_efficient.py`` (mammoth's): for every task's test set,
class-IL accuracy = argmax over *all* the model's outputs (classes of tasks not seen yet included);
task-IL accuracy = argmax after ``mask_classes`` puts every other task's outputs at -inf.
After task t, row t of the accuracy matrix holds these per-task accuracies;
average accuracy = mean over tasks 0..t; forgetting =
``mean((max(acc_matrix, axis=0) - acc_list)[:t])``: for each earlier task j, the best accuracy a row
reached on it (the current row included, so it is never negative) minus the current one, averaged over
j < t; 0 after the first task.

The script evaluates only the tasks seen so far (mammoth appends a task's test loader when the task starts),
so its matrix holds 0 for task j in rows l < j. Here every row holds every task's accuracy (one pass over the
test split); entries of tasks not yet trained are kept for information but never enter a metric: the maximum
runs over rows j..t only, which is the script's number (its zeros cannot raise a maximum of accuracies).
Over rows 0..t instead, the task-IL chance level (1 / classes per task) of an untrained task would count as
a "best" accuracy and inflate task-IL forgetting.
"""

from __future__ import annotations

import torch

from spfde_core.continual.splits import TaskSplit
from spfde_core.train.callbacks import TrainState
from spfde_core.train.loop import autocast


@torch.no_grad()
def per_task_accuracy(state: TrainState, split: TaskSplit) -> tuple[list[float], list[float]]:
    """(class-IL, task-IL) accuracy on each task's test samples, in [0, 1], one pass over the test split."""
    model = state.model
    was_training = model.training
    model.eval()
    tasks = split.num_tasks
    correct = torch.zeros(tasks, dtype=torch.long, device=state.device)
    til_correct = torch.zeros(tasks, dtype=torch.long, device=state.device)
    total = torch.zeros(tasks, dtype=torch.long, device=state.device)
    for batch in state.test_loader:
        with autocast(state):
            logits = model(batch.images).float()
        task = split.task_of(batch.labels)
        own = torch.arange(logits.shape[1], device=logits.device)[None, :] // split.classes_per_task == task[:, None]
        til_logits = logits.masked_fill(~own, float("-inf"))
        ones = torch.ones_like(task)
        total.index_add_(0, task, ones)
        correct.index_add_(0, task, (logits.argmax(1) == batch.labels).long())
        til_correct.index_add_(0, task, (til_logits.argmax(1) == batch.labels).long())
    model.train(was_training)
    denom = total.clamp(min=1).double()
    return (correct / denom).tolist(), (til_correct / denom).tolist()


def average_accuracy(row: list[float], task: int) -> float:
    """Mean accuracy over tasks 0..task (the script's ``sum(acc_list) / (t + 1)``)."""
    return sum(row[: task + 1]) / (task + 1)


def average_forgetting(matrix: list[list[float]], task: int) -> float:
    """The script's forgetting after ``task``: mean over j < task of max_{j <= l <= task} acc[l][j] - acc[task][j].

    ``matrix`` holds rows 0..task (at least). Rows l < j, evaluated before task j was trained, are skipped:
    the script has 0 there (module docstring), here the untrained model's accuracy.
    """
    if task == 0:
        return 0.0
    drops = [max(matrix[row][j] for row in range(j, task + 1)) - matrix[task][j] for j in range(task)]
    return sum(drops) / task
