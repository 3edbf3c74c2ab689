"""Task splits: a dataset's classes cut into equal, consecutive tasks (mammoth / SparCL ``seq-*`` datasets).

SparCL's ``datasets/seq_cifar10.py`` (mammoth's) gives task t the classes ``[t*k, (t+1)*k)`` in label order
(k = N_CLASSES_PER_TASK), for training and test alike. The same rule gives the standard splits:
Split CIFAR-10 = 5 x 2, Split CIFAR-100 = 10 x 10 (mammoth seq-cifar100), Split Tiny-ImageNet = 10 x 20
(mammoth seq-tinyimg). Class-incremental and task-incremental learning share the split; they differ in
evaluation (``metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STANDARD_TASKS = {"cifar10": 5, "cifar100": 10, "tiny_imagenet": 10}
"""Tasks of the standard split of each dataset (mammoth's seq-cifar10 / seq-cifar100 / seq-tinyimg)."""


@dataclass(frozen=True)
class TaskSplit:
    """``num_tasks`` tasks of ``classes_per_task`` consecutive labels each."""

    num_tasks: int
    classes_per_task: int

    @property
    def num_classes(self) -> int:
        return self.num_tasks * self.classes_per_task

    def task_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Task of each label."""
        return labels // self.classes_per_task

    def classes(self, task: int) -> range:
        return range(task * self.classes_per_task, (task + 1) * self.classes_per_task)

    def indices(self, labels: torch.Tensor, task: int) -> torch.Tensor:
        """Sorted CPU indices of the samples of ``task`` (``labels``: the whole split)."""
        return torch.nonzero(self.task_of(labels.cpu()) == task).flatten()

    def outside(self, task: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(num_classes,) bool: True for the classes *not* in ``task`` (what SparCL's cl_mask sets to -inf)."""
        mask = torch.ones(self.num_classes, dtype=torch.bool, device=device)
        mask[self.classes(task).start : self.classes(task).stop] = False
        return mask


def make_split(num_classes: int, num_tasks: int) -> TaskSplit:
    """The split of ``num_classes`` labels into ``num_tasks`` tasks; ValueError if they do not divide."""
    if num_tasks < 1 or num_classes % num_tasks:
        raise ValueError(
            f"continual.num_tasks: expected a divisor of the dataset's {num_classes} classes, got {num_tasks}"
        )
    return TaskSplit(num_tasks, num_classes // num_tasks)


def task_logit_mask(split: TaskSplit, task: int, device: torch.device | str) -> torch.Tensor:
    """Additive mask: 0 on ``task``'s classes, -inf elsewhere (SparCL ``mask_add_on[:, cl_mask] = -inf``)."""
    add = torch.zeros(split.num_classes, device=device)
    add[split.outside(task, device)] = float("-inf")
    return add
