"""GraSP: Gradient Signal Preservation (Wang, Zhang, Grosse, ICLR 2020), as ``alecwangcq/GraSP`` runs it.

At initialisation (``pruner/GraSP.py``, read at commit f166054):

1. data: ``num_iters`` times, ``samples_per_class`` samples of every class from the training loader
   (``GraSP_fetch_data``), concatenated class by class, and each such set split into two halves
   (first N//2 / rest); CIFAR config: ``samples_per_class`` 5, ``num_iters`` 2 (papers.md, and
   ``configs/cifar100/resnet32/GraSP_90.json``);
2. g = sum over the 2 * num_iters halves of grad of CE(f(x) / T, y) (mean over the half), with the
   temperature T = 200 (the code's default; ``main_prune_non_imagenet.py`` passes no T);
3. Hg = sum over the same halves of grad of (g.detach() * grad(CE(f(x) / T, y))).sum(), a
   Hessian-vector product by double backward;
4. score S = -w * Hg; the weights with the *largest* S are removed globally (the code's top
   percentile of -theta * Hg), the rest kept. The code divides by |sum S| first, a positive
   factor that does not change the ranking (skipped here). Mask fixed afterwards (static training).

Differences from the code, all recorded in ``choices()``:

- the code calls ``GraSP_fetch_data`` once per iteration with a fresh iterator of a shuffling
  loader; our loader's order within an epoch is fixed, so one pass collects
  ``num_iters * samples_per_class`` per class and iteration j takes the j-th ``samples_per_class``
  of each class (same volume, no sample repeated). The samples carry the training augmentation,
  as in the code (its train loader augments);
- exact count (k = sum of the layers' target active counts) with ties to the lower flat index,
  instead of the code's ``<= threshold`` rule (which keeps extra weights on ties);
- only the configured sparse layers' weights are scored (g and Hg over those weights: the Hessian
  block of those weights, everything else held fixed); the code scores every conv and linear weight
  (its configs use no exception layers);
- the code re-initialises the Linear weights of its scoring *copy* with Xavier-normal (``reinit``)
  while training the original ones; not reproduced: we score the weights that are trained;
- BN: the code scores a deep copy in train mode (batch statistics), so the model's running statistics
  are untouched; here ``bn_mode=train`` with the running statistics restored after scoring;
- fp32 (no autocast); parameter grads None afterwards.

``allocation=layerwise`` keeps each layer at its own target through the scheme's ``prune``; the
keep score -S is shifted per layer to be non-negative (``-S - min(-S)``), which does not change the
ranking of equal-size units, so the unit score is the unit's summed -S.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore
from torch import nn

from spfde_core.config import domain
from spfde_core.cost.events import Overheads, RunShape
from spfde_core.sparsity import SPARSITY_METHODS
from spfde_core.sparsity.config import SparseConfig
from spfde_core.sparsity.engine import SparseContext, SparseTraining
from spfde_core.sparsity.saliency import PruneAtInit, apply_selection, collect_per_class, scoring_mode


@dataclass
class GraSPConfig(SparseConfig):
    name: str = "grasp"
    samples_per_class: int = domain("[1, inf)", 5)
    """Samples of every class per iteration (GraSP CIFAR configs: 5)."""
    num_iters: int = domain("[1, inf)", 2)
    """Data-fetch iterations, each split in two halves (GraSP CIFAR configs: 2)."""
    temperature: float = domain("(0, inf)", 200.0)
    """Logits are divided by T before the loss (GraSP code default T=200)."""
    allocation: str = "global"
    """global: remove the globally largest -w*Hg (GraSP; unstructured only); layerwise: per-layer targets."""
    bn_mode: str = "train"
    """BN during scoring: train (batch statistics, as the GraSP code) or eval (running statistics)."""

    def predicted_overheads(self, run: RunShape) -> Overheads:
        """Scoring: ``samples_per_class x classes x num_iters`` samples, 2 fwd + 2 bwd + 1 HVP each, dense."""
        samples = self.samples_per_class * run.num_classes * self.num_iters
        per_sample = run.dense_scoring_flops({"forward": 2, "backward": 2, "hvp": 1})
        return Overheads(scoring_passes=samples * per_sample)


Chunk = tuple[torch.Tensor, torch.Tensor]


def grasp_chunks(images: torch.Tensor, labels: torch.Tensor, num_classes: int, spc: int, iters: int) -> list[Chunk]:
    """Split class-sorted samples (``iters * spc`` per class) into the code's 2 * iters halves."""
    per = spc * iters
    chunks = []
    for j in range(iters):
        idx = torch.cat([torch.arange(c * per + j * spc, c * per + (j + 1) * spc) for c in range(num_classes)])
        idx = idx.to(images.device)
        x, y = images.index_select(0, idx), labels.index_select(0, idx)
        n = len(idx) // 2
        chunks += [(x[:n], y[:n]), (x[n:], y[n:])]
    return [c for c in chunks if len(c[1])]


def _loss(model: nn.Module, chunk: Chunk, temperature: float) -> torch.Tensor:
    images, labels = chunk
    return F.cross_entropy(model(images).float() / temperature, labels)


def loss_gradient(
    model: nn.Module, weights: list[torch.Tensor], chunks: list[Chunk], temperature: float
) -> list[torch.Tensor]:
    """g: the sum over chunks of the gradient of each chunk's mean tempered cross-entropy."""
    total = [torch.zeros_like(w) for w in weights]
    for chunk in chunks:
        for acc, g in zip(total, torch.autograd.grad(_loss(model, chunk, temperature), weights), strict=True):
            acc.add_(g)
    return total


def hessian_vector_product(
    model: nn.Module,
    weights: list[torch.Tensor],
    chunks: list[Chunk],
    vector: list[torch.Tensor],
    temperature: float,
) -> list[torch.Tensor]:
    """Sum over chunks of H_chunk v, by double backward: grad of (v * grad(loss)).sum() (v detached)."""
    total = [torch.zeros_like(w) for w in weights]
    for chunk in chunks:
        grads = torch.autograd.grad(_loss(model, chunk, temperature), weights, create_graph=True)
        z = sum((v.detach() * g).sum() for v, g in zip(vector, grads, strict=True))
        for acc, hv in zip(total, torch.autograd.grad(z, weights), strict=True):
            acc.add_(hv)
    return total


def grasp_scores(
    model: nn.Module, weights: list[torch.Tensor], chunks: list[Chunk], temperature: float
) -> list[torch.Tensor]:
    """S = -w * Hg per weight tensor (GraSP removes the largest). Run inside ``scoring_mode``."""
    g = loss_gradient(model, weights, chunks, temperature)
    hg = hessian_vector_product(model, weights, chunks, g, temperature)
    return [-(w.detach() * h) for w, h in zip(weights, hg, strict=True)]


class GraSP(PruneAtInit):
    """Gradient-flow-preserving mask at initialisation, fixed afterwards."""

    cfg: GraSPConfig

    def init_masks(self, ctx: SparseContext) -> None:
        cfg, state = self.cfg, ctx.state
        num_classes = int(state.train_loader.num_classes)
        images, labels = collect_per_class(state.train_loader, num_classes, cfg.samples_per_class * cfg.num_iters)
        chunks = grasp_chunks(images, labels, num_classes, cfg.samples_per_class, cfg.num_iters)
        weights = [layer.weight for layer in ctx.masks]
        with scoring_mode(state.model, cfg.bn_mode):
            scores = grasp_scores(state.model, weights, chunks, cfg.temperature)
        keep = [-s for s in scores]  # keep the smallest S
        apply_selection(ctx, keep, cfg.allocation, [k - k.min() for k in keep])
        n, passes = len(labels), len(chunks)
        cost = {
            "scoring_samples": n,
            "forward_passes": 2 * passes,  # one for g, one for Hg per chunk
            "backward_passes": 2 * passes,  # g, and grad with create_graph for Hg
            "hvp_passes": passes,  # the double backward
            "forward_samples": 2 * n,
            "backward_samples": 2 * n,
            "hvp_samples": n,
        }
        self.record_scoring(state, n, {"forward": 2, "backward": 2, "hvp": 1}, cost)

    def choices(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "score": "S = -w * Hg of the dense network at initialisation; the largest S are removed",
            "normalisation": "none (the code's division by |sum S| leaves the ranking unchanged)",
            "temperature": cfg.temperature,
            "temperature_source": "GraSP code default T=200 (pruner/GraSP.py; main_prune_non_imagenet.py passes no T)",
            "samples_per_class": cfg.samples_per_class,
            "num_iters": cfg.num_iters,
            "data": "one loader pass (epoch-0 order, augmented) collects num_iters*samples_per_class per "
            "class; iteration j takes the j-th samples_per_class of each class, split in two halves",
            "g_and_hg": "sums over the 2*num_iters halves of per-half mean-loss gradients / HVPs",
            "allocation": cfg.allocation,
            "selection": "global, exact count, keep the smallest S, ties kept at the lower flat index"
            if cfg.allocation == "global"
            else "per layer at its target via the scheme's prune with -S shifted to >= 0",
            "weights_scored": "sparse layers' weights only (Hessian block of those weights)",
            "linear_reinit": "not reproduced (the code scores a copy with Xavier-reinit Linear weights)",
            "bn_mode": cfg.bn_mode,
            "bn_running_stats": "restored after scoring",
            "precision": "fp32 (no autocast)",
            "mask_updates": "none (static)",
            "scoring_cost": self.cost,
        }


@SPARSITY_METHODS.register("grasp")
def build_grasp(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """GraSP: prune at init by -w * Hg, preserving gradient flow (Wang, Zhang & Grosse, ICLR 2020)."""
    return [SparseTraining(GraSP(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="grasp_schema", node=GraSPConfig)
