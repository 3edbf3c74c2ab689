"""Feature-map caching of the frozen prefix ("Rethinking the Potential of Layer Freezing"-style, arXiv 2508.15033).

With ``feature_cache.store=memory|disk`` and any freezing method, the output of the frozen prefix
(blocks ``[0, k)``) for the active training samples is computed once when ``k`` changes and stored;
training batches then read the stored maps by sample index and enter the model at block ``k``
(``BlockModel.forward(x, start_block=k)``), so the prefix's forward disappears from every step (the
cost meter charges the building passes instead). No code of the paper is public and its rules are
given at abstract level only: every rule here is our choice, listed in ``CHOICES`` and in the
record's ``feature_cache`` block (docs/freezing.md, "Feature-map caching").

Augmentation after caching (``feature_cache.augment``):

- ``none``: the maps of the un-augmented images; batches follow the loader's order, no augmentation.
- ``naive``: the loader's own per-sample flip and crop draws applied in map space (crop offsets
  and padding scaled by map size / image size, zero padding, flip of the width axis).
- ``similarity``: on a probe batch (``probe_samples`` spread evenly over the active set), each channel's
  sensitivity = 1 - mean cosine similarity between the maps of augmented images and the map-space-transformed
  maps of the un-augmented ones; the ``sensitive_fraction`` most sensitive channels are cached for ``views``
  augmented views per sample (view parameters drawn once per sample), the rest once, un-augmented. Each epoch
  a sample draws one view; its insensitive channels get that view's transform in map space.

Storage (``feature_cache.compression``): fp32, fp16, int8 with a per-channel scale (max |x| / 127
over the cached rows), or progressive (fp16 until the frozen prefix holds ``int8_from`` of the
freezable blocks, int8 from then on: deeper caches are stored at a higher compression rate).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from spfde_core.config import ConfigError
from spfde_core.data.sampling import epoch_generator, spread
from spfde_core.data.types import Batch

BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
TORCH_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}
_VIEW_STREAM = 1 << 31  # epoch-generator "epochs" of the cache's own draws: disjoint from the loader's
_PROBE_STREAM = (1 << 31) + (1 << 30)
_PICK_STREAM = (1 << 31) + (1 << 29)
PROBE_FORWARDS = 2  # per probe sample: the augmented image and the un-augmented one

CHOICES = {
    "label": "Rethinking-the-Potential-of-Layer-Freezing-style (arXiv 2508.15033); no code public, rules ours",
    "when_built": "at the start of an epoch whose frozen prefix k differs from the previous epoch's (or "
    "after a resume); kept while k is unchanged (the prefix was frozen all along, so its maps cannot change)",
    "bn": "frozen blocks run in eval mode (BlockModel.train), so the maps are built in eval mode: exactly "
    "what the uncached step computes",
    "dtype": "maps are built under the run's autocast and read back in the dtype the uncached step hands to "
    "block k (bf16 under train.precision=bf16, fp32 otherwise); fp32 storage of a bf16 map is exact",
    "build_input": "the raw images (not the previous, shallower cache): no compounding of lossy storage",
    "sieving": "only the active samples are cached; samples becoming active with k unchanged are computed "
    "at that epoch's start and added, inactive ones dropped (rows = active set size)",
    "resume": "the cache's maps are not checkpointed, its choices are (sensitive channels, int8 scales, whether "
    "a cache was held): rebuilt deterministically at the first epoch after a resume with those choices; that "
    "rebuild is not charged again when the uninterrupted run held the cache (it paid for it once)",
    "cost": "steps on cached maps are charged without the prefix's forward (a freezing saving); the building "
    "passes (eval-mode prefix forwards, 1 + views for similarity, plus 2 per probe sample at a full build) as "
    "overhead feature_cache_build",
    "naive_map_transform": "crop offset and padding scaled by map/image size and rounded; zero padding in map "
    "space; flip = flip of the map's width axis",
    "similarity_sensitivity": "1 - mean over probe samples of the cosine similarity of a channel's map of the "
    "augmented image and the map-space transform of its un-augmented map; two all-zero maps (a dead channel) "
    "count as identical (similarity 1), not as orthogonal",
    "int8": "symmetric, per-channel scale = max |x| / 127 over the rows cached at the build; rows added "
    "later are clamped to that range",
    "progressive_rule": "fp16 while k / (blocks - 1) < int8_from, int8 from then on",
    "budget": "planned bytes (full training set, every epoch of a prefix-freezing plan) checked before "
    "training; refuse, or recompute (uncached) epochs whose cache would not fit",
    "distributed": "not supported (refused)",
}


def storage_dtype(fc: DictConfig, k: int, num_blocks: int) -> str:
    if fc.compression == "none":
        return "fp32"
    if fc.compression != "progressive":
        return str(fc.compression)
    return "fp16" if k / max(num_blocks - 1, 1) < fc.int8_from else "int8"


def channel_split(fc: DictConfig, c: int) -> tuple[int, int]:
    """(channels stored once, channels stored per view) of a map with ``c`` channels."""
    if fc.augment != "similarity":
        return c, 0
    s = max(1, math.ceil(fc.sensitive_fraction * c))
    return c - s, s


def cache_bytes(fc: DictConfig, shape: tuple[int, int, int], k: int, num_blocks: int, rows: int) -> int:
    """Bytes of the cache of the first ``k`` blocks holding ``rows`` samples of (C, h, w) maps.

    The channels stored once plus ``views`` copies of the sensitive ones (similarity), at the
    storage of prefix ``k``; int8 adds one fp32 scale per channel (base and view stores together hold
    one per channel). What ``FeatureCache.nbytes`` holds after a build of ``rows`` samples.
    """
    c, h, w = shape
    rest, sens = channel_split(fc, c)
    dtype = storage_dtype(fc, k, num_blocks)
    scales = 4 * c if dtype == "int8" else 0
    return rows * (rest + sens * int(fc.views)) * h * w * BYTES[dtype] + scales


def prefix_map_shape(model: Any, k: int, image_size: int, device: Any) -> tuple[int, int, int]:
    """(C, h, w) of the first ``k`` blocks' output for one image (a meta-device model works too)."""
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    was = model.training
    model.eval()
    with torch.no_grad():
        for block in model.blocks[:k]:
            x = block(x)
    model.train(was)
    return tuple(x.shape[1:])


def over_budget_message(fc: DictConfig, need: int, k: int, num_blocks: int, epoch: int | None) -> str:
    when = f"at epoch {epoch}" if epoch is not None else "in the freezing plan"
    return (
        f"feature_cache.budget_bytes: the cache of the first {k} blocks needs {need} bytes {when} "
        f"(storage {storage_dtype(fc, k, num_blocks)}), over the budget of {fc.budget_bytes}; "
        "raise feature_cache.budget_bytes, choose feature_cache.compression=int8 or progressive, or "
        "feature_cache.over_budget=recompute"
    )


def map_transform(maps: torch.Tensor, image_size: int, pad: int, dy: Any, dx: Any, flip: Any) -> torch.Tensor:
    """Pixel-space crop (offsets ``dy, dx`` in ``[0, 2 pad]``) and flip, applied to (B, C, h, w) maps.

    At full resolution this is exactly the loader's augmentation (``TensorLoader._augment``, tested). One
    slice copy per sample: for maps with many channels it is 3-4x faster than the loader's single
    advanced-indexing gather, whose int64 index is as large as the batch (measured on this CPU, batch 128).
    """
    b, c, h, w = maps.shape
    scale = h / image_size
    p = round(pad * scale)
    dy = torch.clamp(torch.round(torch.as_tensor(dy).float() * scale).long(), 0, 2 * p).tolist()
    dx = torch.clamp(torch.round(torch.as_tensor(dx).float() * scale).long(), 0, 2 * p).tolist()
    padded = F.pad(maps, (p, p, p, p)) if p else maps
    out = torch.empty_like(maps, memory_format=torch.contiguous_format)
    for i, (y, x, mirrored) in enumerate(zip(dy, dx, torch.as_tensor(flip).tolist(), strict=True)):
        crop = padded[i, :, y : y + h, x : x + w]
        out[i] = crop.flip(2) if mirrored else crop
    return out


def channel_sensitivity(augmented: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """Per channel: 1 - mean over samples of the cosine similarity of (B, C, h, w) maps of augmented images
    and the map-space-transformed maps of the un-augmented ones (the similarity rule, ``CHOICES``)."""
    a, m = augmented.flatten(2), moved.flatten(2)
    cos = F.cosine_similarity(a, m, dim=2, eps=1e-8)  # (B, C)
    # Two all-zero maps (a dead ReLU channel) are identical, not orthogonal: without this a dead
    # channel would rank as the most sensitive one and take per-view storage for nothing.
    both_zero = (a.abs().amax(2) == 0) & (m.abs().amax(2) == 0)
    return 1 - torch.where(both_zero, torch.ones_like(cos), cos).mean(0)


class Store:
    """Rows of (C, h, w) maps in fp32/fp16/int8 (per-channel scale), in memory or memory-mapped on disk."""

    def __init__(self, rows: int, shape: tuple[int, ...], dtype: str, path: Path | None, scale: torch.Tensor | None):
        self.dtype, self.shape, self.path = dtype, tuple(shape), path
        self.scale = scale  # int8: per channel (C,), float32
        if path is None:
            self.data = torch.zeros((rows, *shape), dtype=TORCH_DTYPE[dtype])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            np_dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[dtype]
            self.memmap = np.memmap(path, dtype=np_dtype, mode="w+", shape=(max(rows, 1), *shape))
            self.data = torch.from_numpy(self.memmap)[:rows]

    @property
    def nbytes(self) -> int:
        return self.data.numel() * BYTES[self.dtype] + (0 if self.scale is None else self.scale.numel() * 4)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().cpu()
        if self.dtype == "int8":
            view = self.scale.view(1, -1, *([1] * (x.ndim - 2)))
            return torch.clamp(torch.round(x / view), -127, 127).to(torch.int8)
        return x.to(TORCH_DTYPE[self.dtype])

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == "int8":
            return x.float() * self.scale.view(1, -1, *([1] * (x.ndim - 2)))
        return x.float()

    def write(self, rows: slice | torch.Tensor, x: torch.Tensor) -> None:
        self.data[rows] = self.encode(x)

    def read(self, rows: torch.Tensor) -> torch.Tensor:
        return self.decode(self.data[rows])

    def close(self) -> None:
        self.data = None
        if self.path is not None:
            del self.memmap
            self.path.unlink(missing_ok=True)


def int8_scale(maps: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    dims = [d for d in range(maps.ndim) if d != channel_dim]
    return scale_from_amax(maps.abs().amax(dim=dims))


def scale_from_amax(amax: torch.Tensor) -> torch.Tensor:
    """The symmetric int8 scale of channels whose largest magnitude is ``amax`` (``CHOICES["int8"]``)."""
    return (amax.float() / 127).clamp_min(1e-12)


class FeatureCache:
    """The callback: builds/updates the cache at epoch start and installs ``state.epoch_loader``."""

    def __init__(self, fc: DictConfig, state: Any, methods: list[Any], cache_dir: Path) -> None:
        self.fc, self.cache_dir = fc, cache_dir
        self.plans = [m.frozen for m in methods if callable(getattr(m, "frozen", None))]
        self.num_blocks = len(state.model.blocks)
        self.k = 0  # blocks the cache holds maps after; 0 = no cache
        self.last_k = None  # the frozen prefix at the previous epoch start (checkpointed)
        self.rows: dict[int, int] = {}  # sample index -> row
        self.base: Store | None = None  # (rows, C_rest, h, w)
        self.views: Store | None = None  # (rows * K, C_sens, h, w)
        self.view_params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (N, K) each
        self.sensitive: list[int] = []
        self.rest: list[int] = []
        self.sensitivity: list[float] = []
        self.builds: list[dict[str, Any]] = []
        self.build_seconds: list[dict[str, Any]] = []  # wall-clock of every building pass, resume rebuilds too
        self.fallbacks: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.resumed = False
        self.saved_rows: list[int] = []
        self.saved_choices: dict[str, Any] | None = None  # a resumed cache's channels and int8 scales
        self._shapes: dict[int, tuple[int, int, int]] = {}
        if not hasattr(state.train_loader, "epoch_draws"):
            raise ConfigError("feature_cache.store: needs the in-memory loader (TensorLoader); this dataset streams")
        self.image_size = int(state.train_loader._images.shape[-1])
        self.planned = self._planned_bytes(state)  # refuses an over-budget plan before any training

    # ---- hooks -----------------------------------------------------------------------------------
    def on_epoch_start(self, state: Any) -> None:
        state.epoch_loader = None
        resuming, self.resumed = self.resumed, False
        k = int(state.model.num_frozen_blocks)
        changed = k != self.last_k
        self.last_k = k
        if k == 0:
            self._drop()
            return
        need = self._bytes(state, k, int(state.train_loader.num_samples))
        if need > self.fc.budget_bytes:
            self._drop()
            self.fallbacks.append(
                {
                    "epoch": state.epoch,
                    "frozen_blocks": k,
                    "bytes_needed": need,
                    "reason": f"over feature_cache.budget_bytes={self.fc.budget_bytes}: recomputed",
                }
            )
            if self.fc.over_budget == "refuse":
                raise ConfigError(self._over_budget_message(need, k, state.epoch))
            return
        if changed or (self.base is None and not resuming):
            self.saved_choices = None
            self._build(state, k)
        elif self.base is None:  # resumed with k unchanged: the uninterrupted run held this cache already
            before = self.saved_rows
            self._build(state, k, charge=False, choices=self.saved_choices)
            self.saved_choices = None
            self._charge_active_change(state, before)
        else:
            self._update_active(state)
        state.epoch_loader = CachedLoader(self, state)

    def on_epoch_end(self, state: Any) -> None:
        state.epoch_loader = None

    def on_train_end(self, state: Any) -> None:
        self._drop()
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def pop_builds(self) -> list[dict[str, Any]]:
        """Building passes not yet charged (the cost meter takes them at the first cached step)."""
        out, self.pending = self.pending, []
        return out

    def record(self, state: Any, run_dir: Any) -> dict[str, Any]:
        return {
            "feature_cache": {
                "config": OmegaConf.to_container(self.fc, resolve=True),
                "choices": CHOICES,
                "planned": self.planned,
                "builds": self.builds,
                "fallbacks": self.fallbacks,
                "max_bytes": max((b["bytes"] for b in self.builds), default=0),
                "build_seconds": self.build_seconds,
                "build_seconds_total": round(sum(b["seconds"] for b in self.build_seconds), 3),
            }
        }

    def state_dict(self) -> dict[str, Any]:
        held = self.base is not None
        return {
            "last_k": self.last_k,
            "builds": self.builds,
            "fallbacks": self.fallbacks,
            "rows": [*self.rows],
            "build_seconds": self.build_seconds,
            "held": held,
            # What a rebuild cannot re-derive once sieving has changed the active set since the build.
            "choices": {
                "sensitive": self.sensitive,
                "rest": self.rest,
                "sensitivity": self.sensitivity,
                "base_scale": None if not held or self.base.scale is None else self.base.scale.tolist(),
                "views_scale": None if self.views is None or self.views.scale is None else self.views.scale.tolist(),
            }
            if held
            else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_k, self.builds, self.fallbacks = state["last_k"], list(state["builds"]), list(state["fallbacks"])
        self.saved_rows = [int(i) for i in state["rows"]]
        self.build_seconds = list(state.get("build_seconds", []))
        self.saved_choices = state.get("choices")
        # A checkpoint taken while an over-budget epoch recomputed held no cache: the next build is charged,
        # as in the uninterrupted run. (Checkpoints older than the "held" key: assume a cache was held.)
        self.resumed = bool(state.get("held", True))

    # ---- sizes -----------------------------------------------------------------------------------
    def _map_shape(self, state: Any, k: int) -> tuple[int, int, int]:
        if k not in self._shapes:
            self._shapes[k] = self._probe_shape(state, k)
        return self._shapes[k]

    def _probe_shape(self, state: Any, k: int) -> tuple[int, int, int]:
        return prefix_map_shape(state.model, k, self.image_size, state.device)

    def _bytes(self, state: Any, k: int, rows: int) -> int:
        return cache_bytes(self.fc, self._map_shape(state, k), k, self.num_blocks, rows)

    def _planned_bytes(self, state: Any) -> dict[str, Any]:
        """Worst planned cache over the run (full training set), from prefix-freezing plans; refuse early."""
        if not self.plans:
            return {"known": False, "reason": "the freezing method decides online; checked at each build"}
        n = int(state.train_loader.dataset_size)
        ks = sorted({int(self.plans[0](e)) for e in range(state.cfg.train.epochs)} - {0})
        sizes = {k: self._bytes(state, k, n) for k in ks}
        worst = max(sizes.values(), default=0)
        if worst > self.fc.budget_bytes and self.fc.over_budget == "refuse":
            k = max(sizes, key=sizes.get)
            raise ConfigError(self._over_budget_message(worst, k, None))
        return {"known": True, "bytes_by_frozen_blocks": sizes, "max_bytes": worst, "samples": n}

    def _over_budget_message(self, need: int, k: int, epoch: int | None) -> str:
        return over_budget_message(self.fc, need, k, self.num_blocks, epoch)

    # ---- building --------------------------------------------------------------------------------
    def _prefix(self, state: Any, k: int, images: torch.Tensor) -> torch.Tensor:
        from spfde_core.train.loop import autocast

        x = images.float().mul_(state.train_loader._scale).add_(state.train_loader._shift)
        if state.train_loader.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        blocks = state.model.blocks[:k]
        modes = [block.training for block in blocks]
        for block in blocks:  # frozen blocks normalise with their running statistics, as in the step
            block.eval()  # (the model may still be in train mode here: after a resume, between evaluations)
        with torch.no_grad(), autocast(state):
            for block in blocks:
                x = block(x)
        for block, mode in zip(blocks, modes, strict=True):
            block.train(mode)
        return x.float().contiguous()

    def _compute_chunks(self, state: Any, k: int, idx: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor, Any]]:
        """Per chunk of ``idx``: (its slice, un-augmented maps of the rest channels (b, C_rest, h, w),
        views of the sensitive ones (b, K, S, h, w) or None). Chunks keep a build's memory at one batch."""
        loader = state.train_loader
        bs = max(int(state.cfg.train.eval_batch_size), 1)
        for start in range(0, idx.numel(), bs):
            part = idx[start : start + bs].to(loader.device)
            raw = loader._images[part]
            maps = self._prefix(state, k, raw).cpu()
            views = None
            if self.sensitive:
                dy, dx, flip = (p[idx[start : start + bs]] for p in self.view_params)
                vs = []
                for v in range(int(self.fc.views)):
                    aug = loader._augment(
                        raw, dy[:, v].to(loader.device), dx[:, v].to(loader.device), flip[:, v].to(loader.device)
                    )
                    vs.append(self._prefix(state, k, aug).cpu()[:, self.sensitive])
                views = torch.stack(vs, 1)
            yield slice(start, start + part.numel()), (maps[:, self.rest] if self.sensitive else maps), views

    def _compute(self, state: Any, k: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All chunks of ``_compute_chunks`` concatenated (the few samples an active-set change adds)."""
        base, views = [], []
        for _, b, v in self._compute_chunks(state, k, idx):
            base.append(b)
            views.append(v)
        return torch.cat(base), (torch.cat(views) if self.sensitive else None)

    def _measure_sensitivity(self, state: Any, k: int, active: torch.Tensor) -> int:
        """Pick the sensitive channels on the probe batch; returns its size (2 prefix forwards each)."""
        loader, c = state.train_loader, self._map_shape(state, k)[0]
        rest, s = channel_split(self.fc, c)
        if not s:
            self.sensitive, self.rest, self.sensitivity = [], list(range(c)), []
            return 0
        probe = spread(active, int(self.fc.probe_samples))  # not the first samples: those are one class
        gen = epoch_generator(state.cfg.run.seed, _PROBE_STREAM + k)
        n = probe.numel()
        dy = torch.randint(0, 2 * loader.pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * loader.pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        raw = loader._images[probe.to(loader.device)]
        dev = loader.device
        aug = self._prefix(state, k, loader._augment(raw, dy.to(dev), dx.to(dev), flip.to(dev)))
        moved = map_transform(self._prefix(state, k, raw), self.image_size, loader.pad, dy, dx, flip)
        sens = channel_sensitivity(aug, moved).cpu()
        order = torch.argsort(sens, descending=True, stable=True)
        self.sensitive = sorted(order[:s].tolist())
        self.rest = sorted(order[s:].tolist())
        self.sensitivity = [round(float(v), 6) for v in sens]
        return int(n)

    def _build(self, state: Any, k: int, charge: bool = True, choices: dict[str, Any] | None = None) -> None:
        """The cache of the first ``k`` blocks for the active set; ``choices``: a resumed cache's channels and
        scales (checkpointed), so that rows computed again are stored exactly as the first build stored them."""
        t0 = time.perf_counter()
        self._drop()
        loader = state.train_loader
        active, _, _, _ = _active_sorted(loader)
        n_all = int(loader.dataset_size)
        if self.fc.augment == "similarity":
            gen = epoch_generator(state.cfg.run.seed, _VIEW_STREAM + k)
            kv = int(self.fc.views)
            self.view_params = (
                torch.randint(0, 2 * loader.pad + 1, (n_all, kv), generator=gen),
                torch.randint(0, 2 * loader.pad + 1, (n_all, kv), generator=gen),
                torch.rand(n_all, kv, generator=gen) < 0.5,
            )
        if choices is None:
            probed = self._measure_sensitivity(state, k, active)
        else:
            probed = 0
            self.sensitive, self.rest = list(choices["sensitive"]), list(choices["rest"])
            self.sensitivity = list(choices["sensitivity"])
            if not self.rest and not self.sensitive:  # a checkpoint of a cache without the similarity rule
                self.rest = list(range(self._map_shape(state, k)[0]))
        self._fill(state, k, active, choices)
        self.rows = {int(i): r for r, i in enumerate(active.tolist())}
        self.k = k
        forwards = 1 + (int(self.fc.views) if self.sensitive else 0)
        if charge:
            self.pending.append({"blocks": k, "samples": len(active), "forwards": forwards})
            if probed:  # the sensitivity probe: each sample's augmented and un-augmented map
                self.pending.append({"blocks": k, "samples": probed, "forwards": PROBE_FORWARDS})
            entry = self._build_entry(state, k, len(active), self.base.dtype, forwards, "built")
            entry["probe_samples"] = probed
            self.builds.append(entry)
        self._time(state, "built" if charge else "rebuilt after a resume", len(active), t0)

    def _fill(self, state: Any, k: int, active: torch.Tensor, choices: dict[str, Any] | None) -> None:
        """Compute the active samples' maps into new stores, one chunk at a time.

        fp32/fp16 chunks go straight into the (memory-mapped) store. int8 needs the per-channel scale over
        every row before the first can be encoded, so its maps are staged once in fp32 (the scale's max is
        taken chunk by chunk, exactly the max over all rows) unless a resumed cache brings its scales.
        """
        c, h, w = self._map_shape(state, k)
        n, kv = len(active), int(self.fc.views)
        dtype = storage_dtype(self.fc, k, self.num_blocks)
        disk = self.fc.store == "disk"
        shapes = {"base": (len(self.rest), h, w), "views": (len(self.sensitive), h, w)}
        rows = {"base": n, "views": n * kv}
        parts = ["base", "views"] if self.sensitive else ["base"]
        scales: dict[str, torch.Tensor | None] = {p: None for p in parts}
        staged: dict[str, torch.Tensor] = {}
        chunks: Any = self._compute_chunks(state, k, active)
        if dtype == "int8" and choices is not None:
            scales = {p: torch.tensor(choices[f"{p}_scale"], dtype=torch.float32) for p in parts}
        elif dtype == "int8":
            staged = {p: torch.empty((rows[p], *shapes[p])) for p in parts}
            amax = {p: torch.zeros(shapes[p][0]) for p in parts}
            for sl, b, v in chunks:
                for p, x in (("base", b), ("views", v)):
                    if p in parts:
                        x = x if p == "base" else x.flatten(0, 1)
                        staged[p][sl if p == "base" else slice(sl.start * kv, sl.stop * kv)] = x
                        amax[p] = torch.maximum(amax[p], x.abs().amax(dim=(0, 2, 3)))
            scales = {p: scale_from_amax(amax[p]) for p in parts}
            bs = max(int(state.cfg.train.eval_batch_size), 1)
            chunks = (
                (slice(s, min(s + bs, n)), staged["base"][s : s + bs], self._staged_views(staged, s, bs, n, kv))
                for s in range(0, n, bs)
            )
        stores = {p: Store(rows[p], shapes[p], dtype, self._path(p, k) if disk else None, scales[p]) for p in parts}
        self.base, self.views = stores["base"], stores.get("views")
        for sl, b, v in chunks:
            self.base.write(sl, b)
            if self.views is not None:
                self.views.write(slice(sl.start * kv, sl.stop * kv), v.flatten(0, 1))

    @staticmethod
    def _staged_views(staged: dict[str, torch.Tensor], s: int, bs: int, n: int, kv: int) -> torch.Tensor | None:
        if "views" not in staged:
            return None
        e = min(s + bs, n)
        return staged["views"][s * kv : e * kv].unflatten(0, (e - s, kv))

    def _time(self, state: Any, what: str, samples: int, t0: float) -> None:
        self.build_seconds.append(
            {"epoch": state.epoch, "what": what, "samples": samples, "seconds": round(time.perf_counter() - t0, 3)}
        )

    def _charge_active_change(self, state: Any, before: list[int]) -> None:
        """After a resume rebuild: charge and record what the uninterrupted run's update would have."""
        if before == [*self.rows]:
            return
        new = len(set(self.rows) - set(before))
        forwards = 1 + (int(self.fc.views) if self.sensitive else 0)
        if new:
            self.pending.append({"blocks": self.k, "samples": new, "forwards": forwards})
        entry = self._build_entry(state, self.k, new, self.base.dtype, forwards, "active set changed")
        entry["dropped"] = len(set(before) - set(self.rows))
        self.builds.append(entry)

    def _build_entry(self, state: Any, k: int, samples: int, dtype: str, forwards: int, what: str) -> dict[str, Any]:
        c_rest = self.base.shape[0]
        c_sens = len(self.sensitive)
        return {
            "epoch": state.epoch,
            "what": what,
            "frozen_blocks": k,
            "samples": samples,
            "rows": len(self.rows),
            "map_shape": [c_rest + c_sens, *self.base.shape[1:]],
            "storage": dtype,
            "store": str(self.fc.store),
            "augment": str(self.fc.augment),
            "channels_cached_once": c_rest,
            "channels_cached_per_view": c_sens,
            "views": int(self.fc.views) if c_sens else 0,
            "sensitive_channels": self.sensitive,
            "channel_sensitivity": self.sensitivity,
            "prefix_forwards_per_sample": forwards,
            "bytes": self.nbytes,
        }

    @property
    def nbytes(self) -> int:
        return (self.base.nbytes if self.base else 0) + (self.views.nbytes if self.views else 0)

    def _update_active(self, state: Any) -> None:
        """Same prefix, changed active set (sieving): compute the new samples, drop the inactive ones."""
        t0 = time.perf_counter()
        active, _, _, _ = _active_sorted(state.train_loader)
        if [*self.rows] == active.tolist():
            return
        new = torch.tensor([i for i in active.tolist() if i not in self.rows], dtype=torch.long)
        kept = [i for i in active.tolist() if i in self.rows]
        base_new, views_new = self._compute(state, self.k, new) if new.numel() else (None, None)
        old_base, old_views, old_rows = self.base, self.views, self.rows
        kv = int(self.fc.views)
        disk = self.fc.store == "disk"
        n = active.numel()
        dtype = old_base.dtype
        tag = state.epoch
        self.base = Store(
            n, old_base.shape, dtype, self._path(f"base-e{tag}", self.k) if disk else None, old_base.scale
        )
        if old_views is not None:
            self.views = Store(
                n * kv, old_views.shape, dtype, self._path(f"views-e{tag}", self.k) if disk else None, old_views.scale
            )
        self.rows = {int(i): r for r, i in enumerate(active.tolist())}
        if kept:
            src = torch.tensor([old_rows[i] for i in kept])
            dst = torch.tensor([self.rows[i] for i in kept])
            self.base.data[dst] = old_base.data[src]
            if old_views is not None:
                vsrc = (src[:, None] * kv + torch.arange(kv)).flatten()
                vdst = (dst[:, None] * kv + torch.arange(kv)).flatten()
                self.views.data[vdst] = old_views.data[vsrc]
        if new.numel():
            dst = torch.tensor([self.rows[int(i)] for i in new.tolist()])
            self.base.write(dst, base_new)
            if views_new is not None:
                self.views.write((dst[:, None] * kv + torch.arange(kv)).flatten(), views_new.flatten(0, 1))
        old_base.close()
        if old_views is not None:
            old_views.close()
        forwards = 1 + (kv if self.sensitive else 0)
        if new.numel():
            self.pending.append({"blocks": self.k, "samples": int(new.numel()), "forwards": forwards})
        entry = self._build_entry(state, self.k, int(new.numel()), dtype, forwards, "active set changed")
        entry["dropped"] = len(old_rows) - len(kept)
        self.builds.append(entry)
        self._time(state, "active set changed", int(new.numel()), t0)

    def _path(self, what: str, k: int) -> Path:
        return self.cache_dir / f"k{k}-{what}.bin"

    def _drop(self) -> None:
        for store in (self.base, self.views):
            if store is not None:
                store.close()
        self.base = self.views = None
        self.rows, self.k = {}, 0

    # ---- reading ---------------------------------------------------------------------------------
    def batch_maps(self, state: Any, idx: torch.Tensor, draws: tuple, epoch_pick: torch.Tensor | None) -> torch.Tensor:
        rows = torch.tensor([self.rows[int(i)] for i in idx.tolist()], dtype=torch.long)
        # The dtype the uncached step hands to block k: bf16 under bf16 autocast (the prefix's output). An fp32
        # map would turn the rest's residual stream to fp32: slower, and not the uncached step's numerics.
        dtype = torch.bfloat16 if state.cfg.train.precision == "bf16" else torch.float32
        maps = self.base.read(rows).to(dtype)
        loader = state.train_loader
        aug = self.fc.augment
        if aug == "naive":
            maps = map_transform(maps, self.image_size, loader.pad, *draws)
        elif aug == "similarity" and self.sensitive:
            kv = int(self.fc.views)
            dy, dx, flip = (p[idx, epoch_pick] for p in self.view_params)
            rest = map_transform(maps, self.image_size, loader.pad, dy, dx, flip)
            sens = self.views.read(rows * kv + epoch_pick).to(dtype)
            out = torch.empty((len(rows), rest.shape[1] + sens.shape[1], *rest.shape[2:]), dtype=dtype)
            out.index_copy_(1, torch.tensor(self.rest), rest)
            out.index_copy_(1, torch.tensor(self.sensitive), sens)
            maps = out
        maps = maps.to(state.device)
        if loader.channels_last:
            maps = maps.contiguous(memory_format=torch.channels_last)
        return maps


def _active_sorted(loader: Any) -> tuple[torch.Tensor, None, None, None]:
    active = loader._active
    return (torch.arange(loader.dataset_size) if active is None else active), None, None, None


class CachedLoader:
    """One epoch's training pass over cached maps: the loader's order and draws, batches from the cache."""

    def __init__(self, cache: FeatureCache, state: Any) -> None:
        self.cache, self.state, self.loader = cache, state, state.train_loader
        self.start_block = cache.k
        self.num_classes = self.loader.num_classes
        self.batch_size = self.loader.batch_size

    @property
    def dataset_size(self) -> int:
        return self.loader.dataset_size

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __len__(self) -> int:
        return len(self.loader)

    def pop_builds(self) -> list[dict[str, Any]]:
        """Building passes not yet charged (read by the cost meter)."""
        return self.cache.pop_builds()

    def iter_shard(self, rank: int, world_size: int) -> Iterator[Batch]:
        raise ConfigError("feature_cache.store: not supported with distributed training yet")

    def __iter__(self) -> Iterator[Batch]:
        loader = self.loader
        order, dy, dx, flip = loader.epoch_draws()
        n = order.numel()
        pick = None
        if self.cache.sensitive:
            gen = epoch_generator(self.state.cfg.run.seed, _PICK_STREAM + self.state.epoch)
            pick = torch.randint(0, int(self.cache.fc.views), (n,), generator=gen)
        stop = (n // loader.batch_size) * loader.batch_size if loader.drop_last else n
        for start in range(0, stop, loader.batch_size):
            end = min(start + loader.batch_size, stop)
            idx = order[start:end]
            draws = (dy[start:end], dx[start:end], flip[start:end])
            maps = self.cache.batch_maps(self.state, idx, draws, None if pick is None else pick[start:end])
            dev_idx = idx.to(loader.device)
            yield Batch(images=maps, labels=loader._labels[dev_idx], indices=dev_idx)


@dataclass
class CachePrediction:
    """The cache's part of ``spfde cost`` (``spfde_core/cost/predict.py``), epoch by epoch."""

    start_block: list[int]
    """Per training epoch: leading blocks whose maps are read from the cache (0: uncached, the prefix runs)."""
    build_flops: list[int]
    """Per training epoch: FLOPs of the building passes, charged by the meter at the epoch's first step."""
    builds: list[dict[str, Any]]
    fallbacks: list[dict[str, Any]]
    bytes_by_frozen_blocks: dict[int, int]
    """Cache bytes of each planned prefix over the whole training set (what a build of it holds)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes_by_frozen_blocks": self.bytes_by_frozen_blocks,
            "max_bytes": max((b["bytes"] for b in self.builds), default=0),
            "build_flops": sum(self.build_flops),
            "builds": self.builds,
            "fallbacks": self.fallbacks,
        }


def predict_cache(
    cfg: DictConfig, model: Any, profile: Any, frozen: list[int], actives: list[dict[str, int]], num_train: int
) -> CachePrediction | None:
    """What the cache does over a run whose frozen prefix per epoch (``frozen``) is known before training.

    The rules of ``FeatureCache.on_epoch_start`` with every sample active (sieving is not predicted):
    a build of all ``num_train`` samples at each epoch whose non-zero prefix k differs from the
    previous epoch's (or follows an uncached epoch) and whose cache fits ``budget_bytes``; an epoch
    over the budget runs uncached (``over_budget=recompute``), or the ConfigError the run raises
    before training is raised here (``refuse``). A build costs eval-mode forwards of the prefix at the
    epoch's active weights: 1 per sample, plus ``views`` per sample and 2 per probe sample with
    ``augment=similarity``. None when ``feature_cache.store`` is none.
    """
    from spfde_core.cost.flops import prefix_forward

    fc = cfg.get("feature_cache")
    if fc is None or fc.store == "none":
        return None
    num_blocks = len(model.blocks)
    device = next(model.parameters()).device
    image_size = int(profile.input_shape[-1])
    ks = sorted(set(frozen) - {0})
    shapes = {k: prefix_map_shape(model, k, image_size, device) for k in ks}
    sizes = {k: cache_bytes(fc, shapes[k], k, num_blocks, num_train) for k in ks}
    worst = max(sizes.values(), default=0)
    if worst > fc.budget_bytes and fc.over_budget == "refuse":
        raise ConfigError(over_budget_message(fc, worst, max(sizes, key=sizes.get), num_blocks, None))
    start, flops, builds, fallbacks = [], [], [], []
    last, have = None, False
    for epoch, k in enumerate(frozen):
        changed, last = k != last, k
        cost = 0
        if k and sizes[k] > fc.budget_bytes:
            fallbacks.append({"epoch": epoch, "frozen_blocks": k, "bytes_needed": sizes[k]})
        if not k or sizes[k] > fc.budget_bytes:
            have = False
            start.append(0)
            flops.append(0)
            continue
        if changed or not have:
            rest, sens = channel_split(fc, shapes[k][0])
            probe = min(int(fc.probe_samples), num_train) if sens else 0
            forwards = num_train * (1 + (int(fc.views) if sens else 0)) + PROBE_FORWARDS * probe
            cost = forwards * prefix_forward(profile, actives[epoch], k, mode="eval")[0]
            builds.append(
                {
                    "epoch": epoch,
                    "frozen_blocks": k,
                    "samples": num_train,
                    "probe_samples": probe,
                    "map_shape": list(shapes[k]),
                    "storage": storage_dtype(fc, k, num_blocks),
                    "channels_cached_once": rest,
                    "channels_cached_per_view": sens,
                    "prefix_forwards": forwards,
                    "flops": cost,
                    "bytes": sizes[k],
                }
            )
        have = True
        start.append(k)
        flops.append(cost)
    return CachePrediction(start, flops, builds, fallbacks, sizes)


def feature_cache_callbacks(cfg: DictConfig, state: Any, methods: list[Any], work_dir: Path, dist: Any) -> list:
    """The feature-cache callback when ``feature_cache.store`` is not none (run after the method callbacks)."""
    fc = cfg.get("feature_cache")
    if fc is None or fc.store == "none":
        return []
    if dist is not None:
        raise ConfigError("feature_cache.store: not supported with distributed training yet; expected none")
    if not hasattr(state.model, "blocks"):
        raise ConfigError("feature_cache.store: the model exposes no blocks")
    return [FeatureCache(fc, state, methods, Path(work_dir) / "feature_cache")]
