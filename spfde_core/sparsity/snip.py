"""SNIP: Single-shot Network Pruning based on connection sensitivity (Lee et al., ICLR 2019).

At initialisation, on ``num_batches`` (1, as the paper and ``namhoonlee/snip-public``) training
mini-batches of the training batch size, each sparse layer's weight gets the connection
sensitivity |dL/dc| = |g * w| of the dense network (all masks one; g = gradient of the mean
cross-entropy, averaged over the batches). The paper and snip-public divide the scores by their sum
over the network; that does not change the ranking and is skipped. The global top-k over all sparse
layers is kept (k = the active count the layer targets ask for, sum of round((1 - s_l) * n_l); ties
to the lower flat index in layer order) and each layer's target becomes its realised sparsity: the
per-layer sparsity is non-uniform, which is SNIP. The mask then stays fixed (static training).

Choices where the sources leave room (all recorded in ``choices()``):

- batches: the first ``num_batches`` of the training loader in its current (epoch-0) order, with
  the training augmentation (random crop + flip), i.e. the very batches training starts with;
  snip-public draws its pruning batch from its training pipeline too;
- BN: ``bn_mode=train`` (batch statistics) by default, like the PyTorch reference codes that run
  on a freshly built model (GraSP's code); snip-public feeds ``is_train=False`` to its pruning
  pass, available as ``bn_mode=eval``. BN running statistics are restored after scoring either way;
- which weights: only the configured sparse layers' weights compete (``sparsity.layers``); snip-public
  ranks every weight *and bias* of the network together, which is not reproduced;
- fp32 scoring (no autocast), parameter grads reset to None afterwards;
- ``allocation=layerwise`` keeps each layer at its own target through the scheme's ``prune`` with
  scores |g * w|^2 (additive: a block's score is the squared L2 norm of its sensitivities), so
  structured schemes work; ``global`` (SNIP proper) is unstructured only.
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
from spfde_core.sparsity.saliency import PruneAtInit, apply_selection, first_batches, scoring_mode


@dataclass
class SNIPConfig(SparseConfig):
    name: str = "snip"
    num_batches: int = domain("[1, inf)", 1)
    """Training mini-batches the connection sensitivity is computed on (SNIP: one)."""
    allocation: str = "global"
    """global: top-k over all sparse layers (SNIP, unstructured only); layerwise: each layer at its target."""
    bn_mode: str = "train"
    """BN when scoring: train (batch statistics) or eval (running statistics; snip-public is_train=False)."""

    def predicted_overheads(self, run: RunShape) -> Overheads:
        """Scoring: ``num_batches`` full batches, 1 forward + 1 backward each, dense.

        The prediction keeps the configured per-layer allocation; SNIP's global top-k allocates by data.
        """
        per_sample = run.dense_scoring_flops({"forward": 1, "backward": 1})
        return Overheads(scoring_passes=self.num_batches * run.batch_size * per_sample)


def snip_scores(
    model: nn.Module, weights: list[torch.Tensor], batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> list[torch.Tensor]:
    """|g * w| per weight tensor, g = mean over ``batches`` of the gradient of the mean cross-entropy.

    Uses ``torch.autograd.grad`` on ``weights`` only: no parameter's ``.grad`` is touched. Run it
    inside ``scoring_mode`` for the BN / buffer / autocast conventions.
    """
    grads = [torch.zeros_like(w) for w in weights]
    for images, labels in batches:
        loss = F.cross_entropy(model(images).float(), labels)
        for acc, g in zip(grads, torch.autograd.grad(loss, weights), strict=True):
            acc.add_(g)
    return [(g / len(batches) * w.detach()).abs() for g, w in zip(grads, weights, strict=True)]


class SNIP(PruneAtInit):
    """Connection-sensitivity mask at initialisation, fixed afterwards."""

    cfg: SNIPConfig

    def init_masks(self, ctx: SparseContext) -> None:
        state = ctx.state
        batches = [(b.images, b.labels) for b in first_batches(state.train_loader, self.cfg.num_batches)]
        weights = [layer.weight for layer in ctx.masks]
        with scoring_mode(state.model, self.cfg.bn_mode):
            scores = snip_scores(state.model, weights, batches)
        apply_selection(ctx, scores, self.cfg.allocation, [s.square() for s in scores])
        samples = sum(len(labels) for _, labels in batches)
        cost = {
            "scoring_samples": samples,
            "forward_passes": len(batches),
            "backward_passes": len(batches),
            "forward_samples": samples,
            "backward_samples": samples,
            "hvp_passes": 0,
        }
        self.record_scoring(state, samples, {"forward": 1, "backward": 1}, cost)

    def choices(self) -> dict[str, Any]:
        return {
            "score": "|g * w| (connection sensitivity) of the dense network at initialisation",
            "normalisation": "none (dividing by the sum, as the paper does, leaves the ranking unchanged)",
            "allocation": self.cfg.allocation,
            "selection": "global top-k over the sparse layers, exact count, ties to the lower flat index"
            if self.cfg.allocation == "global"
            else "per layer at its target via the scheme's prune with |g*w|^2",
            "num_batches": self.cfg.num_batches,
            "batches": "first training-loader batches of epoch 0 (augmented), training batch size",
            "weights_scored": "sparse layers' weights only (snip-public also ranks biases: not reproduced)",
            "bn_mode": self.cfg.bn_mode,
            "bn_running_stats": "restored after scoring",
            "precision": "fp32 (no autocast)",
            "mask_updates": "none (static)",
            "scoring_cost": self.cost,
        }


@SPARSITY_METHODS.register("snip")
def build_snip(cfg, state) -> list:  # noqa: ANN001 - MethodFactory signature
    """SNIP: prune at init by connection sensitivity |g * w| on one batch (Lee et al., ICLR 2019)."""
    return [SparseTraining(SNIP(cfg), cfg, state)]


ConfigStore.instance().store(group="sparsity", name="snip_schema", node=SNIPConfig)
