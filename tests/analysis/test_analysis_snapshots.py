"""Layer numbering, layer choice, snapshot discovery, model rebuilding and feature capture."""

from __future__ import annotations

import pytest
import torch

from reproductions.spfde_neurips22.analysis.similarity import read_structural_similarity
from reproductions.spfde_neurips22.analysis.snapshots import (
    capture_features,
    default_cka_layers,
    depth_layers,
    find_snapshots,
    load_model,
    load_state,
    resolve_layers,
    run_work_dir,
)
from spfde_core.models import build_model


def test_resnet32_has_32_numbered_layers_and_the_papers_defaults() -> None:
    model = build_model("resnet32_w2", 100)
    names = depth_layers(model)
    assert len(names) == 32
    assert names[0] == "stem.conv" and names[1] == "layer1.0.conv1" and names[-1] == "head.fc"
    assert not any("shortcut" in n for n in names)
    # SpFDE Fig. 1b (layer 10) and App. A (1, 3, 18, 25, 32).
    assert default_cka_layers(model, "resnet32_w2") == [
        "stem.conv",
        "layer1.0.conv2",
        "layer1.4.conv1",
        "layer2.3.conv1",
        "layer3.1.conv2",
        "head.fc",
    ]
    assert resolve_layers(model, ["10"]) == ["layer1.4.conv1"]


def test_depth_layers_follow_the_forward_order() -> None:
    model = build_model("resnet20", 10, width=0.25)
    names = depth_layers(model)
    fired: list[str] = []
    modules = {layer.name: layer.module for layer in model.prunable_layers()}
    for name in names:
        modules[name].register_forward_hook(lambda *_, name=name: fired.append(name))
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert fired == names and len(names) == 20


def test_other_models_get_six_evenly_spaced_layers() -> None:
    model = build_model("resnet20", 10, width=0.25)
    chosen = default_cka_layers(model, "resnet20")
    names = depth_layers(model)
    assert [names.index(n) + 1 for n in chosen] == [1, 5, 9, 12, 16, 20]


def test_resolve_layers_takes_names_numbers_and_blocks() -> None:
    model = build_model("resnet20", 10, width=0.25)
    assert resolve_layers(model, ["1", "layer2.0.shortcut.0", "layer3.0", "stem.conv"]) == [
        "stem.conv",
        "layer2.0.shortcut.0",
        "layer3.0",
    ]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(model, ["21"])
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*layer1.0.conv1"):
        resolve_layers(model, ["conv9"])


def test_find_snapshots_orders_by_epoch_from_zero(tmp_path) -> None:
    folder = tmp_path / "snapshots"
    folder.mkdir()
    for name in ("epoch0010.pt", "epoch0002.pt", "notes.txt", "epoch0001.pt.tmp"):
        (folder / name).write_bytes(b"")
    assert [(s.epoch, s.path.name) for s in find_snapshots(tmp_path)] == [(1, "epoch0002.pt"), (9, "epoch0010.pt")]
    assert find_snapshots(tmp_path / "missing") == []


def test_run_work_dir_accepts_a_root_or_the_folder_itself(tmp_path) -> None:
    record = {
        "run": {"reproduction": "r", "row": "x", "seed": 2},
        "config": {"run": {"checkpoint_dir": str(tmp_path / "ck")}},
    }
    assert run_work_dir(record) == tmp_path / "ck" / "r" / "x" / "seed2"
    assert run_work_dir(record, tmp_path / "moved") == tmp_path / "moved" / "r" / "x" / "seed2"
    (tmp_path / "moved" / "snapshots").mkdir(parents=True)
    assert run_work_dir(record, tmp_path / "moved") == tmp_path / "moved"


def test_load_model_registers_masks_and_reproduces_the_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", 10, width=0.25).eval()
    conv = model.blocks[1].conv1
    mask = torch.rand_like(conv.weight) < 0.3
    conv.register_buffer("weight_mask", mask)
    with torch.no_grad():
        conv.weight.mul_(mask)
    torch.save({"model": model.state_dict(), "next_epoch": 3}, tmp_path / "last.pt")
    torch.save(model.state_dict(), tmp_path / "epoch0003.pt")
    images = torch.randn(8, 3, 32, 32)
    for path in (tmp_path / "last.pt", tmp_path / "epoch0003.pt"):
        rebuilt = load_model({"name": "resnet20", "width": 0.25}, 10, load_state(path))
        assert torch.equal(rebuilt.blocks[1].conv1.weight_mask, mask)
        assert torch.allclose(rebuilt(images), model(images))
    features = capture_features(rebuilt, images, ["layer1.0.conv1", "head.fc"], batch_size=3)
    assert features["layer1.0.conv1"].shape == (8, 4 * 32 * 32)
    assert torch.allclose(features["head.fc"], model(images))


def test_read_structural_similarity_is_tidy(tmp_path) -> None:
    (tmp_path / "structural_similarity.csv").write_text("epoch,a.conv1,b.conv2\n0,0.5,0.25\n1,1.0,0.75\n")
    table = read_structural_similarity(tmp_path)
    assert list(table.columns) == ["epoch", "layer", "depth", "similarity"]
    assert table.to_dict("records") == [
        {"epoch": 0, "layer": "a.conv1", "depth": 1, "similarity": 0.5},
        {"epoch": 1, "layer": "a.conv1", "depth": 1, "similarity": 1.0},
        {"epoch": 0, "layer": "b.conv2", "depth": 2, "similarity": 0.25},
        {"epoch": 1, "layer": "b.conv2", "depth": 2, "similarity": 0.75},
    ]
    (tmp_path / "bad.csv").write_text("step,a\n0,1\n")
    with pytest.raises(ValueError, match="epoch"):
        read_structural_similarity(tmp_path / "bad.csv")


def test_the_cka_probe_set_is_spread_over_the_whole_test_split(tmp_path) -> None:
    """Not the first N images: prepared splits are stored class by class (the first 512 CIFAR-10 test images are
    all airplanes), so the probe takes image ``i * size // N``."""
    from omegaconf import OmegaConf

    from reproductions.spfde_neurips22.analysis.snapshots import probe_images
    from spfde_core.cli import load_config
    from spfde_core.data import TensorLoader, load_prepared
    from spfde_core.train.build import prepared_path

    data = load_config(["data=synthetic", f"data.prepared_dir={tmp_path}"]).data
    probe = probe_images(OmegaConf.to_container(data), 8)
    loader = TensorLoader.from_prepared(load_prepared(prepared_path(data)), "test", batch_size=10_000, train=False)
    everything = next(iter(loader)).images
    size = everything.shape[0]
    assert size > 8 and torch.equal(probe, everything[(torch.arange(8) * size) // 8])
