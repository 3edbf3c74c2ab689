"""Feature-map caching of the frozen prefix (spfde_core/freezing/feature_cache.py, docs/freezing.md)."""

from __future__ import annotations

import pytest
import torch

from spfde_core.cli import load_config
from spfde_core.config import ConfigError, config_hash
from spfde_core.cost.flops import prefix_forward
from spfde_core.cost.layers import profile_model
from spfde_core.data.loader import TensorLoader
from spfde_core.freezing.feature_cache import Store, channel_sensitivity, int8_scale, map_transform
from spfde_core.train.build import build_model_for
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke

FREEZE = [
    "freezing=spfde_progressive",
    "freezing.interval_epochs=1",
    "freezing.target_reduction=0.05",
    "train.epochs=4",
    "train.max_batches_per_epoch=2",
    "train.precision=fp32",
]


def _cfg(smoke_overrides, *extra, row="r"):
    return load_config([*smoke_overrides, *FREEZE, f"run.row={row}", *extra])


def test_cached_training_equals_uncached_without_augmentation(smoke_overrides, monkeypatch) -> None:
    # Uncached reference with the loader's augmentation off: the cache (augment=none) stores un-augmented maps.
    monkeypatch.setattr(TensorLoader, "_augment", lambda self, x, dy, dx, flip: x)
    # Evaluating every 2nd epoch: some caches are built while the model is still in train mode.
    plain = run_training(_cfg(smoke_overrides, "train.eval_every_epochs=2", row="plain"))
    cached = run_training(_cfg(smoke_overrides, "train.eval_every_epochs=2", "feature_cache.store=memory", row="c"))
    frozen = plain["freezing"]["frozen_blocks_per_epoch"]
    assert frozen == cached["freezing"]["frozen_blocks_per_epoch"] and max(frozen) >= 1
    assert cached["results"]["final_test_loss"] == pytest.approx(plain["results"]["final_test_loss"], rel=1e-4)
    assert cached["results"]["final_top1"] == plain["results"]["final_top1"]

    # The prefix's forward is gone from the steps, exactly; the building passes are charged once as overhead.
    cfg = _cfg(smoke_overrides, "train.channels_last=false")
    profile = profile_model(build_model_for(cfg, 10, torch.device("cpu")), (3, 32, 32))
    samples = 2 * cfg.train.batch_size
    gone = sum(samples * prefix_forward(profile, None, k)[0] for k in frozen)
    p, c = plain["cost"]["training_flops"], cached["cost"]["training_flops"]
    assert p["steps"]["forward"] - c["steps"]["forward"] == gone
    assert c["savings"]["freezing"] - p["savings"]["freezing"] == gone
    builds = cached["feature_cache"]["builds"]
    assert [b["frozen_blocks"] for b in builds] == sorted({k for k in frozen if k})
    charged = sum(b["samples"] * prefix_forward(profile, None, b["frozen_blocks"], mode="eval")[0] for b in builds)
    assert c["overheads"]["feature_cache_build"] == charged
    assert all(b["bytes"] == b["samples"] * 4 * torch.Size(b["map_shape"]).numel() for b in builds)


def test_cached_maps_enter_block_k_in_the_uncached_steps_dtype_under_bf16(smoke_overrides, monkeypatch) -> None:
    # Under bf16 autocast the uncached step hands block k a bf16 map; an fp32 map from the cache would turn
    # the rest of the network's residual stream to fp32 (slower, and other numerics than the uncached run).
    monkeypatch.setattr(TensorLoader, "_augment", lambda self, x, dy, dx, flip: x)
    dtypes = set()

    class Probe:
        def on_batch_start(self, state, batch) -> None:
            if state.epoch_loader is not None:
                dtypes.add(batch.images.dtype)

    bf16 = [o for o in FREEZE if not o.startswith("train.precision")] + ["train.precision=bf16"]
    plain = run_training(load_config([*smoke_overrides, *bf16, "run.row=plain"]))
    cached = run_training(load_config([*smoke_overrides, *bf16, "run.row=c", "feature_cache.store=memory"]), [Probe()])
    assert dtypes == {torch.bfloat16}
    assert cached["results"]["final_test_loss"] == pytest.approx(plain["results"]["final_test_loss"], rel=1e-3)


def test_cache_holds_the_active_set_under_sieving(smoke_overrides) -> None:
    seen = []

    class Probe:
        def on_batch_start(self, state, batch) -> None:
            cache = state.epoch_loader
            if cache is not None and not seen or (seen and seen[-1][0] != state.epoch):
                rows = len(cache.cache.rows) if cache is not None else None
                seen.append((state.epoch, rows, state.train_loader.num_samples))

    cfg = _cfg(
        smoke_overrides,
        "sieving=random_redraw",
        "sieving.redraw_every_epochs=1",
        "feature_cache.store=disk",
        "feature_cache.augment=naive",
    )
    record = run_training(cfg, extra_callbacks=[Probe()])
    cached = [(rows, n) for _, rows, n in seen if rows is not None]
    assert cached and all(rows == n < 512 for rows, n in cached)
    assert any(b["what"] == "active set changed" for b in record["feature_cache"]["builds"])
    assert not list((cfg.run.checkpoint_dir and __import__("pathlib").Path(cfg.run.checkpoint_dir)).rglob("*.bin"))


def test_int8_round_trip_error_is_bounded() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(16, 8, 4, 4, generator=gen).relu() * torch.linspace(0.1, 10, 8).view(1, 8, 1, 1)
    scale = int8_scale(maps)
    store = Store(16, maps.shape[1:], "int8", None, scale)
    store.write(slice(None), maps)
    err = (store.read(torch.arange(16)) - maps).abs()
    assert (err <= scale.view(1, 8, 1, 1) / 2 + 1e-6).all()
    assert store.nbytes == maps.numel() + 8 * 4  # one byte per value, one fp32 scale per channel


def test_over_budget_is_refused_up_front_or_recomputed(smoke_overrides) -> None:
    with pytest.raises(ConfigError, match="feature_cache.budget_bytes: the cache of the first"):
        run_training(_cfg(smoke_overrides, "feature_cache.store=memory", "feature_cache.budget_bytes=1000"))
    record = run_training(
        _cfg(
            smoke_overrides,
            "feature_cache.store=memory",
            "feature_cache.budget_bytes=1000",
            "feature_cache.over_budget=recompute",
            "train.epochs=3",
            "freezing.target_reduction=0.03",
            row="fallback",
        )
    )
    assert record["feature_cache"]["builds"] == [] and record["feature_cache"]["fallbacks"]


def test_config_hash_unchanged_when_off(smoke_overrides) -> None:
    cfg = _cfg(smoke_overrides)
    assert config_hash(cfg) == config_hash(_cfg(smoke_overrides, "feature_cache.store=none"))
    assert config_hash(cfg) != config_hash(_cfg(smoke_overrides, "feature_cache.store=memory"))
    with pytest.raises(ConfigError, match="feature_cache.augment"):
        run_training(_cfg(smoke_overrides, "feature_cache.store=memory", "feature_cache.augment=mixup"))


class Kill(Exception):
    pass


class KillInEpoch:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch:
            raise Kill


@pytest.mark.parametrize(
    "extra",
    [
        ["feature_cache.augment=similarity", "feature_cache.compression=progressive"],
        # Sieving changes the active set after the build: the resumed rebuild must reuse the build's
        # sensitive channels and int8 scales (checkpointed), not measure them again on the new active set.
        [
            "feature_cache.augment=similarity",
            "feature_cache.compression=int8",
            "sieving=random_redraw",
            "sieving.redraw_every_epochs=1",
        ],
    ],
    ids=["progressive", "sieved-int8"],
)
def test_resume_after_kill_matches_uninterrupted_run(smoke_overrides, tmp_path, extra) -> None:
    extra = ["feature_cache.store=disk", *extra]
    whole = run_training(
        _cfg(smoke_overrides, *extra, f"run.results_dir={tmp_path / 'w'}", f"run.checkpoint_dir={tmp_path / 'wc'}")
    )
    cfg = _cfg(smoke_overrides, *extra)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch(3)])  # the cache of epoch 2's prefix is lost
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [3]
    assert resumed["results"] == whole["results"]
    assert resumed["cost"]["training_flops"] == whole["cost"]["training_flops"]
    assert resumed["feature_cache"]["builds"] == whole["feature_cache"]["builds"]
    builds = whole["feature_cache"]["builds"]
    assert {b["storage"] for b in builds} <= {"fp16", "int8"} and builds[0]["channels_cached_per_view"] >= 1
    # Every building pass is timed, the resumed run's uncharged rebuild too.
    timed, whole_timed = resumed["feature_cache"]["build_seconds"], whole["feature_cache"]["build_seconds"]
    assert len(whole_timed) == len(builds) and all(t["seconds"] >= 0 for t in timed + whole_timed)
    assert [t["what"] for t in timed].count("rebuilt after a resume") == 1


def test_cache_options_without_a_cache_are_refused() -> None:
    from spfde_core.config import validate

    for option in ("feature_cache.augment=similarity", "feature_cache.compression=int8", "feature_cache.views=3"):
        cfg = load_config(["profile=smoke", "freezing=linear", option])
        with pytest.raises(ConfigError, match=r"feature_cache\.\w+: set to .*feature_cache.store=none caches nothing"):
            validate(cfg)
    validate(load_config(["profile=smoke", "freezing=linear", "feature_cache.store=none"]))
    validate(load_config(["profile=smoke", "freezing=linear", "feature_cache.store=disk", "feature_cache.views=3"]))


def test_dead_channel_is_insensitive_and_a_shifted_one_is_sensitive() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(8, 3, 6, 6, generator=gen)
    maps[:, 0] = 0  # a dead ReLU channel: zero whatever the augmentation
    augmented = maps.clone()
    augmented[:, 2] = torch.rand(8, 6, 6, generator=gen)  # channel 2 changes with the augmentation
    sens = channel_sensitivity(augmented, maps)
    assert sens[0] == 0 and sens[1].abs() < 1e-6 and sens[2] > 0.05
    assert torch.argsort(sens, descending=True, stable=True)[0] == 2


def test_int8_build_stores_every_row_within_half_a_step_of_the_prefix_maps(smoke_overrides) -> None:
    # The int8 build stages the maps chunk by chunk: its scale must be the max over all rows, and each
    # stored row must decode to the prefix's map of that sample within half a quantisation step.
    checked = []

    class Check:
        def on_batch_start(self, state, batch) -> None:
            loader = state.epoch_loader
            if loader is None or checked:
                return
            cache = loader.cache
            idx = torch.tensor([*cache.rows])
            maps = cache._prefix(state, cache.k, state.train_loader._images[idx])[:, cache.rest]
            scale = int8_scale(maps)
            assert torch.equal(cache.base.scale, scale)
            rows = torch.tensor([cache.rows[int(i)] for i in idx])
            err = (cache.base.read(rows) - maps).abs()
            assert (err <= scale.view(1, -1, 1, 1) / 2 + 1e-6).all()
            checked.append(len(idx))

    cfg = _cfg(
        smoke_overrides,
        "feature_cache.store=disk",
        "feature_cache.augment=similarity",
        "feature_cache.compression=int8",
        "train.eval_batch_size=50",  # several chunks per build
    )
    run_training(cfg, extra_callbacks=[Check()])
    assert checked and checked[0] > 50


def test_map_transform_at_full_resolution_is_the_loaders_augmentation() -> None:
    # The naive and similarity rules apply the loader's crop and flip draws in map space: at the
    # image's own resolution that must be exactly the loader's pixel-space augmentation.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 5, 32, 32, generator=gen)
    loader = TensorLoader(
        torch.zeros(16, 32, 32, 3, dtype=torch.uint8),
        torch.zeros(16, dtype=torch.long),
        num_classes=10,
        batch_size=16,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        train=True,
    )
    dy, dx = torch.randint(0, 9, (16,), generator=gen), torch.randint(0, 9, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    assert torch.equal(map_transform(x, 32, 4, dy, dx, flip), loader._augment(x, dy, dx, flip))
    # At half resolution the offsets and padding halve: an offset of 2 pixels moves the map by 1.
    down, no_flip = torch.full((16,), 6), torch.zeros(16, dtype=torch.bool)
    half = map_transform(x[:, :, ::2, ::2], 32, 4, down, torch.full((16,), 4), no_flip)
    assert torch.equal(half[:, :, :-1, :], x[:, :, 2::2, ::2]) and not half[:, :, -1, :].any()


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
def test_disk_store_round_trips_rows_and_deletes_its_file(tmp_path, dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(12, 4, 3, 3, generator=gen)
    scale = int8_scale(maps) if dtype == "int8" else None
    path = tmp_path / "cache" / "k2-base.bin"
    store = Store(12, maps.shape[1:], dtype, path, scale)
    store.write(torch.tensor([11, 0, 5]), maps[[11, 0, 5]])
    store.write(slice(1, 5), maps[1:5])
    assert path.stat().st_size == 12 * maps[0].numel() * {"fp32": 4, "fp16": 2, "int8": 1}[dtype]
    rows = torch.tensor([0, 3, 11, 5])
    tolerance = {"fp32": 0.0, "fp16": 2e-3, "int8": None}[dtype]
    if dtype == "int8":
        assert ((store.read(rows) - maps[rows]).abs() <= scale.view(1, -1, 1, 1) / 2 + 1e-6).all()
    else:
        assert torch.allclose(store.read(rows), maps[rows], rtol=tolerance, atol=tolerance)
    store.close()
    assert not path.exists()
