import pytest
import torch
import torch.nn.functional as F

from spfde_core.data import Batch, TensorLoader, load_prepared, prepare_dataset

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
N, SIZE = 50, 8


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, SIZE, SIZE, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (N,), generator=gen)
    return images, labels


def make(data, train=True, **kw):
    kw = {"num_classes": 10, "batch_size": 16, "mean": MEAN, "std": STD, "train": train, "seed": 7, **kw}
    return TensorLoader(*data, **kw)


def to_uint8(x):
    """Undo normalisation: back to (B, 3, H, W) uint8 pixels."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def one_pass(loader):
    return [Batch(*(t.clone() for t in batch)) for batch in loader]


def test_same_seed_and_epoch_give_identical_batches(data):
    a, b = make(data), make(data)
    a.set_epoch(3)
    b.set_epoch(3)
    for x, y in zip(one_pass(a), one_pass(b), strict=True):
        for u, v in zip(x, y, strict=True):
            assert torch.equal(u, v)
    # ...and a pass does not depend on what ran before it.
    a.set_epoch(5)
    one_pass(a)
    a.set_epoch(3)
    assert all(torch.equal(u[0], v[0]) for u, v in zip(one_pass(a), one_pass(b), strict=True))


def test_epochs_and_seeds_change_order(data):
    loader = make(data)
    orders = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        orders.append(torch.cat([batch.indices for batch in loader]))
    assert not torch.equal(orders[0], orders[1])
    other = make(data, seed=8)
    assert not torch.equal(torch.cat([batch.indices for batch in other]), orders[0])


def test_each_active_index_once_per_epoch_with_its_label(data):
    loader = make(data)
    batches = one_pass(loader)
    assert len(batches) == len(loader) == 4 and loader.num_samples == N
    indices = torch.cat([b.indices for b in batches])
    assert sorted(indices.tolist()) == list(range(N))
    assert torch.equal(torch.cat([b.labels for b in batches]), data[1][indices])
    assert all(b.images.dtype == torch.float32 and b.images.shape[1:] == (3, SIZE, SIZE) for b in batches)


def test_set_active_restricts_and_ignores_listing_order(data):
    loader, other = make(data), make(data)
    active = torch.tensor([40, 3, 17, 22, 9, 31, 0])
    loader.set_active(active)
    other.set_active(active.flip(0))
    assert loader.num_samples == 7 and len(loader) == 1
    seen = torch.cat([b.indices for b in loader])
    assert sorted(seen.tolist()) == sorted(active.tolist())
    assert torch.equal(seen, torch.cat([b.indices for b in other]))
    loader.set_active(None)
    assert loader.num_samples == N


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (torch.tensor([0, 50]), r"\[0, 50\)"),
        (torch.tensor([-1]), r"\[0, 50\)"),
        (torch.tensor([1, 2, 2]), "unique"),
        (torch.tensor([[1, 2]]), "1-D integer"),
        (torch.tensor([1.0, 2.0]), "1-D integer"),
        (torch.zeros(N, dtype=torch.bool), "boolean mask"),
        (torch.tensor([], dtype=torch.int64), "empty"),
    ],
)
def test_set_active_validates(data, indices, match):
    with pytest.raises(ValueError, match=match):
        make(data).set_active(indices)


def test_train_crops_are_translations_of_the_zero_padded_image(data):
    loader = make(data, batch_size=N)
    batch = next(iter(loader))
    padded = F.pad(data[0].permute(0, 3, 1, 2), (4, 4, 4, 4))
    got = to_uint8(batch.images)
    offsets, flips = set(), set()
    for img, idx in zip(got, batch.indices, strict=True):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(img, (lambda c: c.flip(-1) if flip else c)(padded[idx, :, dy : dy + SIZE, dx : dx + SIZE]))
        ]
        assert matches, f"sample {int(idx)} is not a crop of its padded image"
        offsets.add(matches[0][:2])
        flips.add(matches[0][2])
    assert len(offsets) > 5 and flips == {False, True}


def test_eval_is_fixed_order_and_unaugmented(data):
    loader = make(data, train=False)
    loader.set_epoch(0)
    first = one_pass(loader)
    loader.set_epoch(9)
    second = one_pass(loader)
    indices = torch.cat([b.indices for b in first])
    assert indices.tolist() == list(range(N))
    assert all(torch.equal(u[0], v[0]) for u, v in zip(first, second, strict=True))
    images = torch.cat([b.images for b in first])
    expected = (data[0].permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)


def test_channels_last_output(data):
    batch = next(iter(make(data, channels_last=True)))
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    assert not next(iter(make(data))).images.is_contiguous(memory_format=torch.channels_last)


def test_drop_last_batch_counts(data):
    keep, drop = make(data, batch_size=16), make(data, batch_size=16, drop_last=True)
    assert len(keep) == 4 and [len(b.labels) for b in keep] == [16, 16, 16, 2]
    assert len(drop) == 3 and [len(b.labels) for b in drop] == [16, 16, 16]
    drop.set_active(torch.arange(32))
    assert len(drop) == 2 and sum(len(b.labels) for b in drop) == 32


def test_rejects_channel_first_images(data):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        TensorLoader(data[0].permute(0, 3, 1, 2), data[1], num_classes=10, batch_size=4, mean=MEAN, std=STD, train=True)


def test_from_prepared_uses_catalog_normalisation(tmp_path):
    small = {"num_train": 20, "num_test": 10, "num_classes": 4, "image_size": 8}
    prepared = load_prepared(prepare_dataset("synthetic", out_dir=tmp_path, synthetic=small))
    loader = TensorLoader.from_prepared(prepared, "test", batch_size=10)
    assert loader.num_classes == 4 and not loader.train
    batch = next(iter(loader))
    expected = (torch.from_numpy(prepared.test_images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(batch.images, expected, rtol=0, atol=1e-5)
    assert torch.equal(batch.labels, torch.from_numpy(prepared.test_labels))


def test_spread_probe_sets_cover_a_class_sorted_split_in_proportion() -> None:
    from spfde_core.data.sampling import spread

    labels = torch.arange(10).repeat_interleave(100)  # stored class by class, as the prepared splits are
    picked = spread(torch.arange(1000), 50)
    assert picked.tolist() == sorted(set(picked.tolist())) and len(picked) == 50
    assert torch.bincount(labels[picked], minlength=10).tolist() == [5] * 10  # the first 50 would all be class 0
    assert spread(torch.tensor([3, 8, 9]), 10).tolist() == [3, 8, 9] and spread(torch.arange(5), 0).numel() == 0
