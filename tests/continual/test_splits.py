"""Task splits of Split CIFAR-10 / CIFAR-100 / Tiny-ImageNet and the other-task logit mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spfde_core.continual.splits import STANDARD_TASKS, make_split, task_logit_mask
from spfde_core.data.loader import TensorLoader


def _loader(num_classes: int, size: int, per_class: int = 3) -> TensorLoader:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 256, (len(labels), size, size, 3), dtype=np.uint8)
    return TensorLoader(
        images, labels, num_classes=num_classes, batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, train=True
    )


@pytest.mark.parametrize(
    ("dataset", "num_classes", "size"), [("cifar10", 10, 32), ("cifar100", 100, 32), ("tiny_imagenet", 200, 64)]
)
def test_standard_split_gives_each_task_its_consecutive_classes(dataset: str, num_classes: int, size: int) -> None:
    loader = _loader(num_classes, size)
    split = make_split(num_classes, STANDARD_TASKS[dataset])
    assert split.classes_per_task == {"cifar10": 2, "cifar100": 10, "tiny_imagenet": 20}[dataset]
    task = split.num_tasks - 1
    loader.set_active(split.indices(loader.labels, task))
    seen = torch.cat([batch.labels for batch in loader])
    assert sorted(set(seen.tolist())) == list(split.classes(task))  # only, and all, of the last task's classes
    assert len(seen) == 3 * split.classes_per_task
    extra = loader.make_batch(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert extra.images.shape == (2, 3, size, size) and extra.labels.tolist() == loader.labels[:2].tolist()


def test_split_refuses_classes_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="continual.num_tasks"):
        make_split(10, 3)


def test_other_task_logits_get_no_loss_and_no_gradient() -> None:
    split = make_split(10, 5)
    logits = torch.randn(4, 10, requires_grad=True)
    labels = torch.tensor([2, 3, 3, 2])
    loss = F.cross_entropy(logits + task_logit_mask(split, 1, "cpu"), labels)
    loss.backward()
    assert torch.isfinite(loss)
    other = [c for c in range(10) if c not in (2, 3)]
    assert (logits.grad[:, other] == 0).all() and (logits.grad[:, [2, 3]] != 0).all()
    expected = F.cross_entropy(logits.detach()[:, [2, 3]], labels - 2)  # = CE over the task's two classes
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
