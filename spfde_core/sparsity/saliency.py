"""Shared machinery of the pruning-at-initialisation methods (SNIP, GraSP).

- ``PruneAtInit``: what the two methods share around their scores: the allocation check, the mask
  fixed after initialisation, the scoring cost (event and record) as the method's only state;
- ``scoring_mode``: runs the scoring passes on the dense network at initialisation without leaving a
  trace: BN in train mode (batch statistics, as the reference codes run it) but every buffer (BN
  running statistics, ``num_batches_tracked``) restored afterwards, no frozen blocks, fp32 (no
  autocast), every parameter's ``.grad`` None afterwards;
- ``first_batches`` / ``collect_per_class``: the scoring data, read by iterating the training loader
  directly (never ``set_epoch``: the trainer sets the epoch before every epoch, so scoring does not
  change the training order);
- ``select_global`` / ``apply_selection``: global top-k over all sparse layers (exact count, ties
  to the lower flat index in layer order) or each layer at its own target through the scheme.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from spfde_core.cost.events import CostEvent
from spfde_core.data.types import Batch, Loader
from spfde_core.sparsity.engine import SparseContext
from spfde_core.sparsity.masks import MASK_BUFFER
from spfde_core.sparsity.schemes._common import top_indices

ALLOCATIONS = ("global", "layerwise")


class PruneAtInit:
    """A mask scored once at initialisation (``init_masks``, the subclass's), fixed afterwards."""

    def __init__(self, cfg: Any) -> None:
        if cfg.allocation not in ALLOCATIONS:
            raise ValueError(f"sparsity.allocation: expected one of {ALLOCATIONS}, got {cfg.allocation!r}")
        if cfg.allocation == "global" and cfg.scheme != "unstructured":
            raise ValueError(
                f"sparsity.allocation=global needs sparsity.scheme=unstructured (got {cfg.scheme!r}); "
                "use sparsity.allocation=layerwise for structured schemes"
            )
        self.cfg = cfg
        self.cost: dict[str, int] = {}
        """The scoring passes, for the record's ``choices.scoring_cost``."""

    def record_scoring(self, state: Any, samples: int, passes: dict[str, int], cost: dict[str, int]) -> None:
        """The scoring: a dense cost event of ``passes`` per sample for the meter, ``cost`` for the record."""
        state.cost_events.append(
            CostEvent("scoring_pass", 0, state.step, samples=samples, passes=passes, density="dense")
        )
        self.cost = cost

    def on_epoch_start(self, ctx: SparseContext) -> bool:
        return False

    def after_backward(self, ctx: SparseContext) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"cost": self.cost}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cost = dict(state["cost"])


@contextlib.contextmanager
def scoring_mode(model: nn.Module, bn_mode: str = "train") -> Iterator[None]:
    """Score the model as it is now, then put back its mode, buffers, frozen blocks and grads."""
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"sparsity.bn_mode: expected train or eval, got {bn_mode!r}")
    was_training = model.training
    frozen = getattr(model, "num_frozen_blocks", None)
    buffers = {
        name: buf.detach().clone()
        for name, buf in model.named_buffers()
        if not name.endswith(MASK_BUFFER)  # masks are the output; everything else is restored
    }
    try:
        model.train(bn_mode == "train")
        if frozen:
            model.num_frozen_blocks = 0
        with torch.autocast(next(model.parameters()).device.type, enabled=False):
            yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        for p in model.parameters():
            p.grad = None
        if frozen is not None:
            model.num_frozen_blocks = frozen
        model.train(was_training)


def first_batches(loader: Loader, num_batches: int) -> list[Batch]:
    """The first ``num_batches`` batches of one pass over ``loader`` (in its current epoch order)."""
    if num_batches < 1:
        raise ValueError(f"sparsity.num_batches: expected >= 1, got {num_batches}")
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == num_batches:
            return batches
    raise ValueError(f"sparsity.num_batches={num_batches}: the training loader holds only {len(batches)} batches")


def collect_per_class(loader: Loader, num_classes: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``per_class`` samples of every class, in the order one pass of ``loader`` yields them.

    Stops reading as soon as every class is full (GraSP's ``GraSP_fetch_data``); raises ValueError
    if one pass cannot supply them. Returns (images, labels) sorted by class, and within a class in
    loader order, as ``GraSP_fetch_data`` concatenates them.
    """
    if per_class < 1:
        raise ValueError(f"sparsity.samples_per_class: expected >= 1, got {per_class}")
    images: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    counts = [0] * num_classes
    full = 0
    for batch in loader:
        take = []
        for i, c in enumerate(batch.labels.tolist()):
            if not 0 <= c < num_classes:
                raise ValueError(f"label {c} outside [0, {num_classes})")
            if counts[c] < per_class:
                counts[c] += 1
                take.append(i)
                full += counts[c] == per_class
        if take:
            idx = torch.tensor(take, device=batch.images.device)
            picked, labels = batch.images.index_select(0, idx), batch.labels.index_select(0, idx)
            for c in labels.unique().tolist():
                images[c].append(picked[labels == c])
        if full == num_classes:
            x = torch.cat([torch.cat(per, 0) for per in images], 0)
            y = torch.arange(num_classes, device=x.device).repeat_interleave(per_class)
            return x, y
    short = {c: n for c, n in enumerate(counts) if n < per_class}
    raise ValueError(
        f"sparsity.samples_per_class={per_class}: one pass of the training loader has too few samples "
        f"of classes {dict(list(short.items())[:10])}{' ...' if len(short) > 10 else ''} (class: count)"
    )


def select_global(keep_scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Bool masks keeping the ``k`` highest scores over all tensors together.

    Exact count; ties go to the lower flat index of the concatenation in layer order.
    """
    flat = torch.cat([s.detach().flatten().float() for s in keep_scores])
    if not bool(torch.isfinite(flat).all()):
        raise FloatingPointError("pruning scores are not finite (overflow in the scoring pass?)")
    if not 0 <= k <= flat.numel():
        raise ValueError(f"cannot keep {k} of {flat.numel()} weights")
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[top_indices(flat, k)] = True
    parts = keep.split([s.numel() for s in keep_scores])
    return [part.view(s.shape) for part, s in zip(parts, keep_scores, strict=True)]


def apply_selection(
    ctx: SparseContext,
    keep_scores: list[torch.Tensor],
    allocation: str,
    layerwise_scores: list[torch.Tensor] | None = None,
) -> None:
    """Set every sparse layer's mask (and, for ``global``, its target) from the scores.

    ``global``: keep the global top-k of ``keep_scores`` (higher = keep), k = the active count the
    layers' targets ask for; each layer's target becomes its realised sparsity. Unstructured only
    (``PruneAtInit`` checks it). ``layerwise``: each layer at its own target through
    ``ctx.scheme.prune`` with ``layerwise_scores`` (non-negative, additive), so block/channel/N:M/pattern
    schemes work.
    """
    layers = list(ctx.masks)
    if allocation == "global":
        k = sum(ctx.expected_count(layer) for layer in layers)
        for layer, keep in zip(layers, select_global(keep_scores, k), strict=True):
            numel = keep.numel()
            layer.target = (numel - int(keep.sum())) / numel
            layer.mask = keep.to(layer.mask.device)
    else:
        assert allocation == "layerwise" and layerwise_scores is not None
        for layer, scores in zip(layers, layerwise_scores, strict=True):
            full = torch.ones_like(layer.mask)
            layer.mask = ctx.scheme.prune(full, scores.detach().float().to(full.device), layer.target)
