"""GraSP: the Hessian-gradient product, the keep-the-smallest -w*Hg rule, per-class sampling, a smoke run."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from spfde_core.cli import load_config
from spfde_core.data.types import Batch
from spfde_core.models import build_model
from spfde_core.ops.fused_update import MaskedSGD
from spfde_core.sparsity.engine import SparseTraining
from spfde_core.sparsity.grasp import GraSP, GraSPConfig, grasp_chunks, grasp_scores, hessian_vector_product
from spfde_core.sparsity.saliency import collect_per_class, scoring_mode
from spfde_core.train.run import run_training


class ListLoader:
    """A loader over fixed batches; ``limit`` fails the test if more batches than that are read."""

    def __init__(self, batches: list[Batch], num_classes: int = 10, limit: int | None = None) -> None:
        self.batches, self.num_classes, self.limit = batches, num_classes, limit

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            assert self.limit is None or i < self.limit, "read past the point where every class was full"
            yield batch

    def __len__(self) -> int:
        return len(self.batches)


def labelled_batches(labels: list[int], batch_size: int, size: int = 32, seed: int = 0) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels)
    x = torch.randn(len(labels), 3, size, size, generator=gen)
    idx = torch.arange(len(labels))
    return [
        Batch(x[i : i + batch_size], y[i : i + batch_size], idx[i : i + batch_size])
        for i in range(0, len(labels), batch_size)
    ]


def test_collect_per_class_takes_the_first_k_of_every_class_and_stops() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (60,), generator=gen).tolist()
    batches = labelled_batches(labels, batch_size=8, size=4)
    loader = ListLoader(batches, num_classes=4)
    images, got = collect_per_class(loader, 4, 3)
    assert got.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    all_x = torch.cat([b.images for b in batches])
    firsts = [i for c in range(4) for i in [j for j, lab in enumerate(labels) if lab == c][:3]]
    assert torch.equal(images, all_x[firsts])  # class-sorted, loader order within a class
    last_needed = max(firsts) // 8
    loader.limit = last_needed + 1
    collect_per_class(loader, 4, 3)  # stops at the batch that fills the last class
    with pytest.raises(ValueError, match="samples_per_class"):
        collect_per_class(ListLoader(labelled_batches([0, 1, 1, 2], 2, size=4), 3), 3, 2)


def test_chunks_are_the_codes_halves_of_each_iteration() -> None:
    x = torch.arange(3 * 4).float().view(12, 1)  # 3 classes x (2 iters * 2 per class), class-sorted
    y = torch.arange(3).repeat_interleave(4)
    chunks = grasp_chunks(x, y, 3, 2, 2)
    assert [c[0].flatten().tolist() for c in chunks] == [[0, 1, 4], [5, 8, 9], [2, 3, 6], [7, 10, 11]]
    assert [c[1].tolist() for c in chunks] == [[0, 0, 1], [1, 2, 2], [0, 0, 1], [1, 2, 2]]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_hessian_vector_product_and_scores_match_autograd_functional() -> None:
    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    chunks = [(torch.randn(6, 3, 8, 8, generator=gen), torch.randint(0, 5, (6,), generator=gen)) for _ in range(2)]
    names = ["0.weight", "4.weight"]
    weights = [model.get_parameter(n) for n in names]
    temperature = 3.0

    def loss_fn(chunk):
        def f(*ws):
            logits = functional_call(model, dict(zip(names, ws, strict=True)), (chunk[0],))
            return nn.functional.cross_entropy(logits / temperature, chunk[1])

        return f

    primals = tuple(w.detach() for w in weights)
    vector = [torch.randn(w.shape, generator=gen) for w in weights]
    expected = [torch.zeros_like(w) for w in weights]
    g_ref = [torch.zeros_like(w) for w in weights]
    for chunk in chunks:
        for acc, h in zip(
            expected, torch.autograd.functional.hvp(loss_fn(chunk), primals, tuple(vector))[1], strict=True
        ):
            acc += h
        for acc, g in zip(g_ref, torch.autograd.functional.vjp(loss_fn(chunk), primals)[1], strict=True):
            acc += g
    with scoring_mode(model):
        got = hessian_vector_product(model, weights, chunks, vector, temperature)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
        assert b.abs().max() > 1e-4  # not trivially zero

    # The score is S = -w * H g with g = the summed chunk gradients.
    hg_ref = [torch.zeros_like(w) for w in weights]
    for chunk in chunks:
        for acc, h in zip(hg_ref, torch.autograd.functional.hvp(loss_fn(chunk), primals, tuple(g_ref))[1], strict=True):
            acc += h
    with scoring_mode(model):
        scores = grasp_scores(model, weights, chunks, temperature)
    for s, w, h in zip(scores, primals, hg_ref, strict=True):
        assert torch.allclose(s, -w * h, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())


def test_grasp_removes_exactly_the_largest_scores_globally() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", 10, width=0.25)
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(2)
    labels = torch.randperm(80, generator=gen).remainder(10).tolist()
    loader = ListLoader(labelled_batches(labels, batch_size=16, size=16))
    cfg = OmegaConf.structured(GraSPConfig(target=0.9, samples_per_class=2, num_iters=2))
    state = SimpleNamespace(
        model=model, train_loader=loader, optimizer=MaskedSGD(model.parameters(), 0.1), step=0, cost_events=[]
    )
    state.epoch = state.step = 0
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    sparse = SparseTraining(GraSP(cfg), cfg, state)
    sparse.on_train_start(state)

    # Recompute the scores on an identical copy and apply the rule independently (numpy lexsort).
    ref_modules = {layer.name: layer.module for layer in reference.prunable_layers()}
    weights = [ref_modules[layer.name].weight for layer in sparse.masks]
    x, y = collect_per_class(loader, 10, 4)
    with scoring_mode(reference):
        scores = grasp_scores(reference, weights, grasp_chunks(x, y, 10, 2, 2), 200.0)
    flat = torch.cat([s.flatten() for s in scores]).numpy()
    k = sum(round(0.1 * w.numel()) for w in weights)
    order = np.lexsort((np.arange(flat.size), flat))  # smallest S first, ties to the lower index
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:k]] = True
    got = torch.cat([layer.mask.flatten() for layer in sparse.masks]).numpy()
    assert np.array_equal(got, keep)
    assert flat[got].max() <= flat[~got].min()  # every removed weight scores at least as high as any kept one
    assert len({round(d, 6) for d in sparse.masks.densities().values()}) > 3
    for key, value in bn_before.items():
        assert torch.equal(model.state_dict()[key], value), key
    cost = sparse.method.choices()["scoring_cost"]
    assert cost["scoring_samples"] == 40 and cost["hvp_passes"] == 4 and cost["forward_passes"] == 8


def test_global_allocation_needs_unstructured() -> None:
    with pytest.raises(ValueError, match="sparsity.scheme"):
        GraSP(OmegaConf.structured(GraSPConfig(scheme="block")))


class MaskWatch:
    """After every step: pruned weights are zero and the masks are the initial ones."""

    def on_train_start(self, state) -> None:
        self.steps = 0
        self.layers = {n: m for n, m in state.model.named_modules() if hasattr(m, "weight_mask")}
        self.initial = {n: m.weight_mask.clone() for n, m in self.layers.items()}
        assert self.initial and all(not bool(m.all()) for m in self.initial.values())

    def after_step(self, state, step) -> None:
        self.steps += 1
        for name, module in self.layers.items():
            assert torch.equal(module.weight_mask, self.initial[name]), name
            assert torch.all(module.weight[~module.weight_mask] == 0), name


@pytest.mark.smoke
def test_grasp_smoke_run_keeps_a_fixed_mask(smoke_overrides) -> None:
    watch = MaskWatch()
    extra = ["sparsity=grasp", "sparsity.target=0.9", "train.epochs=2", "train.max_batches_per_epoch=8"]
    record = run_training(load_config([*smoke_overrides, *extra]), extra_callbacks=[watch])
    block = record["sparsity"]
    assert block["method"] == "grasp" and watch.steps == 2 * 8
    assert block["num_mask_updates"] == 0
    assert block["exploration_rate"] == pytest.approx(block["sparse_layers_density"], abs=1e-12)
    assert block["sparse_layers_density"] == pytest.approx(0.1, abs=1e-3)
    assert block["choices"]["temperature"] == 200.0
    assert block["choices"]["scoring_cost"]["scoring_samples"] == 5 * 2 * 10
