"""Find a run's model snapshots, rebuild its model from them, and capture layer features.

``spfde train ... run.snapshot_every_epochs=N`` saves the model's state dict after every N epochs
as ``<run.checkpoint_dir>/<reproduction>/<row>/seed<k>/snapshots/epochNNNN.pt`` (NNNN = epochs
trained, from 1); ``last.pt`` next to that folder holds the final model (key ``model``). Here a
snapshot's ``epoch`` is counted from 0 like ``curve.csv`` and ``structural_similarity.csv``:
``epoch0001.pt`` is epoch 0 (the model after the first epoch).

Layer numbering (for ``--layers 1,3,10`` and the default CKA layers): the conv and linear layers
counted from 1 in forward order, **without** the 1x1 projection shortcuts (``shortcut``/``downsample``
convs), the way a ResNet's depth is counted. ResNet-32 then has exactly 32 layers: 1 = ``stem.conv``,
2..31 = ``layerS.B.conv1``/``conv2`` (layer1.0.conv1 ... layer3.4.conv2), 32 = ``head.fc``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spfde_core.models import build_model
from spfde_core.models.base import BlockModel

__all__ = [
    "PAPER_RESNET32_LAYERS",
    "Snapshot",
    "capture_features",
    "default_cka_layers",
    "depth_layers",
    "find_snapshots",
    "layer_modules",
    "load_model",
    "load_state",
    "probe_images",
    "resolve_layers",
    "run_work_dir",
]

log = logging.getLogger("spfde_neurips22.analysis")

SNAPSHOT_DIR = "snapshots"
_SNAPSHOT_NAME = re.compile(r"^epoch(\d+)\.pt$")
PAPER_RESNET32_LAYERS = (1, 3, 10, 18, 25, 32)
"""SpFDE Fig. 1b (layer 10) and App. A (layers 1, 3, 18, 25, 32) of ResNet-32."""
_SHORTCUT_PARTS = ("shortcut", "downsample")


@dataclass(frozen=True)
class Snapshot:
    epoch: int
    """Epoch counted from 0 (``epochNNNN.pt`` -> NNNN - 1)."""
    path: Path


def run_work_dir(record: dict[str, Any], checkpoint_dir: str | Path | None = None) -> Path:
    """The run's checkpoint folder (holding ``last.pt`` and ``snapshots/``).

    ``checkpoint_dir`` may be that folder itself or a checkpoint root (``run.checkpoint_dir``) under
    which ``<reproduction>/<row>/seed<k>`` is appended; None takes the root from the run's config.
    """
    parts = (record["run"]["reproduction"], record["run"]["row"], f"seed{record['run']['seed']}")
    if checkpoint_dir is None:
        return Path(record["config"]["run"]["checkpoint_dir"]).joinpath(*parts)
    root = Path(checkpoint_dir)
    if (root / SNAPSHOT_DIR).is_dir() or (root / "last.pt").is_file():
        return root
    return root.joinpath(*parts)


def find_snapshots(work_dir: str | Path) -> list[Snapshot]:
    """The ``snapshots/epochNNNN.pt`` files of a run folder, by epoch; [] when there are none."""
    folder = Path(work_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _SNAPSHOT_NAME.match(path.name)
        if match and path.is_file():
            found.append(Snapshot(int(match.group(1)) - 1, path))
    return sorted(found, key=lambda s: s.epoch)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A model state dict from a snapshot file or from ``last.pt`` (its ``model`` entry)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def load_model(model_cfg: dict[str, Any], num_classes: int, state: dict[str, torch.Tensor]) -> BlockModel:
    """Rebuild the run's model and load a state dict into it (eval mode, CPU, float32).

    Sparse runs carry ``weight_mask`` buffers; they are registered on their layers first (the masks
    are already applied to the saved weights, so nothing else is needed).
    """
    model = build_model(model_cfg["name"], num_classes, width=model_cfg.get("width"))
    modules = dict(model.named_modules())
    for key, value in state.items():
        if key.endswith(".weight_mask"):
            owner = key[: -len(".weight_mask")]
            if owner in modules and not hasattr(modules[owner], "weight_mask"):
                modules[owner].register_buffer("weight_mask", torch.zeros_like(value))
    model.load_state_dict(state)
    return model.eval()


def layer_modules(model: BlockModel) -> dict[str, nn.Module]:
    """Every module by its layer name, as ``prunable_layers()`` names them (``stem.conv``,
    ``layer1.0.conv1``, blocks as ``layer1.0``), not by its attribute path (``blocks.0.conv``)."""
    modules: dict[str, nn.Module] = {}
    for block_name, block in model.named_blocks():
        for sub_name, module in block.named_modules():
            modules[f"{block_name}.{sub_name}" if sub_name else block_name] = module
    return modules


def depth_layers(model: BlockModel) -> list[str]:
    """Conv/linear layer names in forward order without projection shortcuts (numbered from 1)."""
    return [
        layer.name
        for layer in model.prunable_layers()
        if not any(part in layer.name.split(".") for part in _SHORTCUT_PARTS)
    ]


def default_cka_layers(model: BlockModel, model_name: str, count: int = 6) -> list[str]:
    """ResNet-32: the paper's layers 1, 3, 10, 18, 25, 32; otherwise ``count`` evenly spaced layers."""
    names = depth_layers(model)
    if model_name.startswith("resnet32") and len(names) == 32:
        return [names[i - 1] for i in PAPER_RESNET32_LAYERS]
    picks = np.unique(np.round(np.linspace(0, len(names) - 1, min(count, len(names)))).astype(int))
    return [names[i] for i in picks]


def resolve_layers(model: BlockModel, layers: Sequence[str | int]) -> list[str]:
    """Layer names from names (any module as ``layer_modules`` names it, e.g. ``layer1.0.conv1`` or a
    block ``layer2.0``) or numbers (the depth counting of the module docstring).

    Raises:
        ValueError: an unknown name or a number out of range (the message lists the valid ones).
    """
    names = depth_layers(model)
    modules = layer_modules(model)
    resolved: list[str] = []
    for item in layers:
        text = str(item).strip()
        if text.isdigit():
            number = int(text)
            if not 1 <= number <= len(names):
                raise ValueError(f"layer number {number} is out of range: this model has layers 1..{len(names)}")
            name = names[number - 1]
        elif text in modules and text:
            name = text
        else:
            raise ValueError(f"unknown layer {text!r}; expected a number 1..{len(names)} or one of: {', '.join(names)}")
        if name not in resolved:
            resolved.append(name)
    return resolved


def layer_number(model: BlockModel, name: str) -> int | None:
    """A layer's number (from 1) in the depth counting, None for modules outside it."""
    names = depth_layers(model)
    return names.index(name) + 1 if name in names else None


def probe_images(
    data_cfg: dict[str, Any],
    num_samples: int,
    prepared_dir: str | Path | None = None,
    expected_sha256: str | None = None,
) -> torch.Tensor:
    """``num_samples`` evenly spaced test images of the run's dataset, normalised as in evaluation (CPU).

    A fixed probe set: the same images, in the same order, for every snapshot. Evenly spaced over the whole
    split (image ``i * size // num_samples``), not the first ones: prepared splits are stored class by class,
    so the first 512 CIFAR-10 test images are all airplanes. Synthetic data is
    generated if missing (as training does). A prepared dataset whose content hash differs from
    ``expected_sha256`` (the run record's) is used with a warning.

    Raises:
        PreparedDataError (PreparedDataMissing when absent): the prepared dataset cannot be read.
    """
    from omegaconf import OmegaConf

    from spfde_core.data import ImageFolderStreamLoader, TensorLoader, get_dataset_info, load_prepared
    from spfde_core.data.sampling import spread
    from spfde_core.train.build import prepare, prepared_path

    data = OmegaConf.create(dict(data_cfg))
    if prepared_dir is not None:
        data.prepared_dir = str(prepared_dir)
    directory = prepared_path(data)
    if data.name == "synthetic" and not directory.exists():
        prepare(data)
    batch_size = min(num_samples, 256)
    if get_dataset_info(data.name).in_memory:
        prepared = load_prepared(directory)
        loader: Any = TensorLoader.from_prepared(prepared, "test", batch_size=batch_size, train=False)
        meta = prepared.meta
    else:
        loader = ImageFolderStreamLoader(directory, "val", batch_size=batch_size, train=False, num_workers=0)
        meta = loader.meta
    if expected_sha256 and meta.get("content_sha256") != expected_sha256:
        log.warning(
            "%s: content %s differs from the run's data (%s); using it as the probe set anyway",
            directory,
            meta.get("content_sha256"),
            expected_sha256,
        )
    loader.set_active(spread(torch.arange(int(loader.dataset_size)), num_samples))
    images, taken = [], 0
    for batch in loader:
        images.append(batch.images[: num_samples - taken].cpu())
        taken += images[-1].shape[0]
        if taken >= num_samples:
            break
    if taken < 2:
        raise ValueError(f"{directory}: CKA needs at least 2 probe images, the test split has {taken}")
    return torch.cat(images).contiguous()


@contextmanager
def _hooks(model: BlockModel, names: Sequence[str], out: dict[str, list[torch.Tensor]]) -> Iterator[None]:
    modules = layer_modules(model)
    handles = []
    for name in names:

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor, name: str = name) -> None:
            out[name].append(output.detach().reshape(output.shape[0], -1).float())

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def capture_features(
    model: BlockModel,
    images: torch.Tensor,
    layers: Sequence[str],
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Each layer's output on ``images`` (eval mode, fp32), flattened per example: {name: (n, d)}, on ``device``."""
    model = model.to(device).eval()
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with _hooks(model, layers, captured):
        for start in range(0, images.shape[0], batch_size):
            model(images[start : start + batch_size].to(device))
    return {name: torch.cat(parts) for name, parts in captured.items()}
