"""``analyze_run``: SpFDE Fig. 1 analyses of one finished run, as PNGs and CSV tables.

What it writes (fixed names, into ``<run_dir>/analysis/`` unless told otherwise):

- ``structural_similarity_long.csv``, ``structural_similarity.png``, ``structural_similarity_heatmap.png``:
  the run's ``structural_similarity.csv`` as a tidy table and its plots (Fig. 1a); sparse runs only;
- ``cka.csv``, ``cka.png``: linear CKA between each chosen layer at every snapshot epoch and the same
  layer of the final model on a fixed probe set of test images (Fig. 1b, App. A); runs trained with
  ``run.snapshot_every_epochs=N`` only;
- ``analysis.json``: what was written (with content hashes), from what, with which settings.

It never overwrites a file it did not write: an output name that already exists is replaced only
when ``analysis.json`` lists it with the same content hash (written by an earlier analysis
and untouched since); anything else stops the command before any work, naming the file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from spfde_core import atomic, records
from spfde_core.data import PreparedDataError
from spfde_core.models import build_model

from . import plots
from ._files import sha256
from .cka import CkaReference
from .similarity import SIMILARITY_FILE, read_structural_similarity
from .snapshots import (
    capture_features,
    default_cka_layers,
    depth_layers,
    find_snapshots,
    load_model,
    load_state,
    probe_images,
    resolve_layers,
    run_work_dir,
)

log = logging.getLogger("spfde_neurips22.analysis")

__all__ = ["MANIFEST_FILE", "OUTPUT_FILES", "AnalysisError", "IncompleteAnalysisError", "analyze_run"]

OUTPUT_FILES = {
    "structural_similarity_csv": "structural_similarity_long.csv",
    "structural_similarity_png": "structural_similarity.png",
    "structural_similarity_heatmap_png": "structural_similarity_heatmap.png",
    "cka_csv": "cka.csv",
    "cka_png": "cka.png",
}
"""Output key -> file name; the only names ``analyze_run`` writes besides the manifest."""
MANIFEST_FILE = "analysis.json"
_WRITER = "spfde analyze"  # the manifest's identity (the command's former name): earlier outputs stay ours


class AnalysisError(Exception):
    """A run that cannot be analysed as asked; the message says why and what to do."""


class IncompleteAnalysisError(AnalysisError):
    """Part of the analysis was written, part could not be done (see the message).

    Attributes:
        written: the files that were written, as ``analyze_run`` would have returned them.
    """

    def __init__(self, message: str, written: dict[str, Path]) -> None:
        super().__init__(message)
        self.written = written


def _parse_layers(layers: Sequence[str | int] | str | None) -> list[str | int] | None:
    if layers is None:
        return None
    items = layers.split(",") if isinstance(layers, str) else list(layers)
    items = [item for item in (str(i).strip() for i in items) if item]
    return items or None


def _read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST_FILE
    if not path.exists():
        return {"written_by": _WRITER, "files": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("written_by") != _WRITER:
        raise AnalysisError(f"{path} exists and was not written by this analysis; move it away or pass --out DIR")
    return manifest


def _check_overwrites(out_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Names this command may replace; raises if an output name holds a file it did not write."""
    replaced = []
    for name in OUTPUT_FILES.values():
        path = out_dir / name
        if not path.exists():
            continue
        if manifest["files"].get(name, {}).get("sha256") != sha256(path):
            raise AnalysisError(
                f"{path} exists and is not an unchanged output of an earlier analysis "
                "(not listed in analysis.json, or edited since); move it away or pass --out DIR"
            )
        replaced.append(name)
    return replaced


def _final_state(record: dict[str, Any], work_dir: Path, snapshots: list[Any]) -> tuple[dict[str, Any], str]:
    """The final model's state dict: ``last.pt`` if it is this finished run's, else the last-epoch snapshot."""
    epochs = record["results"]["epochs"]
    last = work_dir / "last.pt"
    if last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        if ckpt.get("config_hash") != record["config_hash"] or ckpt.get("next_epoch") != epochs:
            raise AnalysisError(
                f"{last} does not hold this run's final model (config {ckpt.get('config_hash')}, "
                f"{ckpt.get('next_epoch')} epochs; the record: config {record['config_hash']}, {epochs} epochs); "
                "was the run re-started? Pass the right checkpoint folder with --checkpoint-dir"
            )
        return ckpt["model"], "last.pt"
    at_end = [s for s in snapshots if s.epoch == epochs - 1]
    if at_end:
        return load_state(at_end[0].path), f"snapshots/{at_end[0].path.name}"
    raise AnalysisError(
        f"{work_dir}: neither last.pt nor a snapshot of the final epoch ({epochs}); the final model is needed for CKA"
    )


def _compute_cka(
    record: dict[str, Any],
    work_dir: Path,
    snapshots: list[Any],
    names: list[str],
    numbers: dict[str, int],
    probe_samples: int,
    prepared_dir: str | Path | None,
    device: torch.device,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    cfg = record["config"]
    num_classes = record["data"]["num_classes"]
    final_state, final_source = _final_state(record, work_dir, snapshots)
    final = load_model(cfg["model"], num_classes, final_state)
    try:
        images = probe_images(
            cfg["data"], probe_samples, prepared_dir=prepared_dir, expected_sha256=record["data"].get("content_sha256")
        )
    except (PreparedDataError, ValueError) as err:
        raise AnalysisError(
            f"CKA needs the run's test images: {err} (prepare the dataset, or pass --prepared-dir)"
        ) from None
    log.info("CKA on %d probe images, layers %s, %d snapshots", images.shape[0], ", ".join(names), len(snapshots))
    references = {
        name: CkaReference(features) for name, features in capture_features(final, images, names, device=device).items()
    }
    del final
    epochs = record["results"]["epochs"]
    sources = [(s.epoch, f"snapshots/{s.path.name}", s.path) for s in snapshots if s.epoch < epochs]
    stale = [s.path.name for s in snapshots if s.epoch >= epochs]
    if stale:
        log.warning("ignoring snapshots past the run's %d epochs: %s", epochs, ", ".join(stale))
    if not any(epoch == epochs - 1 for epoch, _, _ in sources):
        sources.append((epochs - 1, final_source, None))  # anchor the curve at the final model itself
    rows = []
    for epoch, source, path in sources:
        state = final_state if path is None else load_state(path)
        model = load_model(cfg["model"], num_classes, state)
        for name, features in capture_features(model, images, names, device=device).items():
            rows.append(
                {
                    "epoch": epoch,
                    "layer": name,
                    "layer_number": numbers.get(name),
                    "cka": references[name].score(features),
                    "snapshot": source,
                }
            )
    table = pd.DataFrame(rows, columns=["epoch", "layer", "layer_number", "cka", "snapshot"])
    table["layer_number"] = table["layer_number"].astype("Int64")
    info = {
        "layers": names,
        "probe_samples": int(images.shape[0]),
        "probe_set": f"first {images.shape[0]} images of the {cfg['data']['name']} test split",
        "final_model": final_source,
        "snapshots": [source for _, source, _ in sources],
    }
    return table, info


def analyze_run(
    run_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    layers: Sequence[str | int] | str | None = None,
    probe_samples: int = 512,
    out_dir: str | Path | None = None,
    *,
    prepared_dir: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Path]:
    """Write SpFDE Fig. 1 analyses (structural similarity, CKA vs the final model) of a finished run.

    Args:
        run_dir: the run's record folder, ``results/runs/<reproduction>/<row>/seed<k>``.
        checkpoint_dir: the run's checkpoint folder (holding ``snapshots/`` and ``last.pt``) or a
            checkpoint root to append ``<reproduction>/<row>/seed<k>`` to; None = the run's
            ``run.checkpoint_dir``.
        layers: CKA layers, as names (``layer1.0.conv1``; any module name) or numbers (conv/linear
            layers from 1 in forward order without projection shortcuts: ResNet-32 has 32); a
            comma-separated string is accepted. They also restrict the structural similarity plot
            to those that are sparse (if any). None = ResNet-32's layers 1, 3, 10, 18, 25, 32 (the
            paper's), otherwise 6 evenly spaced layers.
        probe_samples: CKA probe set size: N test images evenly spaced over the split (fewer if the split is smaller).
        out_dir: where to write; None = ``<run_dir>/analysis``.
        prepared_dir: root of prepared datasets when not the run's ``data.prepared_dir``.
        device: where to run the snapshots and CKA (``auto`` = CUDA if available).

    Returns:
        Output key (see ``OUTPUT_FILES``, plus ``manifest``) -> path of every file written.

    Raises:
        AnalysisError: no run record; nothing to analyse (a dense run without snapshots); an output
            name taken by a file this command did not write; bad layers; no final model.
        IncompleteAnalysisError: some outputs were written (``.written``), but the run is dense (no
            structural similarity) or has no snapshots (no CKA).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if probe_samples < 2:
        raise AnalysisError(f"--probe-samples: expected at least 2 images, got {probe_samples}")
    try:
        record = records.read_record(run_dir)
    except records.RecordError as err:
        raise AnalysisError(
            f"{err}; expected the folder of a finished run, results/runs/<reproduction>/<row>/seed<k>"
        ) from None
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    manifest = _read_manifest(out_dir)
    replaced = _check_overwrites(out_dir, manifest)
    model_cfg = record["config"]["model"]
    arch = build_model(model_cfg["name"], record["data"]["num_classes"], width=model_cfg.get("width"))
    numbers = {name: i for i, name in enumerate(depth_layers(arch), start=1)}
    chosen = _parse_layers(layers)
    try:
        names = resolve_layers(arch, chosen) if chosen else default_cka_layers(arch, model_cfg["name"])
    except ValueError as err:
        raise AnalysisError(f"--layers: {err}") from None
    del arch

    problems: list[str] = []
    similarity = None
    sparsity = record.get("sparsity")
    if (run_dir / SIMILARITY_FILE).is_file():
        similarity = read_structural_similarity(run_dir / SIMILARITY_FILE)
    elif sparsity is None:
        problems.append(
            f"{run_dir} is a dense run (sparsity={record['config'].get('sparsity', {}).get('name', 'dense')}): "
            "structural similarity needs a sparse run (e.g. spfde train sparsity=mest_ems ...)"
        )
    else:
        problems.append(f"{run_dir} has no {SIMILARITY_FILE} although the run is sparse; was it deleted?")

    work_dir = run_work_dir(record, checkpoint_dir)
    snapshots = find_snapshots(work_dir)
    cka = cka_info = None
    if snapshots:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        cka, cka_info = _compute_cka(
            record, work_dir, snapshots, names, numbers, probe_samples, prepared_dir, torch.device(device)
        )
    else:
        problems.append(
            f"no model snapshots in {work_dir / 'snapshots'}, so no CKA: re-run the training with "
            "run.snapshot_every_epochs=N (e.g. 1) to save the model every N epochs"
            + ("" if checkpoint_dir else ", or pass --checkpoint-dir if the checkpoints were moved")
        )
    if similarity is None and cka is None:
        raise AnalysisError("nothing to analyse: " + "; ".join(problems))

    title = f"{record['run']['reproduction']}/{record['run']['row']}/seed{record['run']['seed']}"
    written: dict[str, Path] = {}
    if similarity is not None:
        similarity["layer_number"] = similarity["layer"].map(numbers).astype("Int64")
        # Explicit --layers also pick the lines of the plot (those that are sparse); else all, by depth.
        selected = [n for n in names if n in set(similarity["layer"])] if chosen else []
        path = out_dir / OUTPUT_FILES["structural_similarity_csv"]
        atomic.write_text(path, similarity.to_csv(index=False))
        written["structural_similarity_csv"] = path
        written["structural_similarity_png"] = plots.plot_structural_similarity(
            similarity,
            out_dir / OUTPUT_FILES["structural_similarity_png"],
            layers=selected or None,
            title=f"Structural similarity to the final model\n{title}",
        )
        written["structural_similarity_heatmap_png"] = plots.plot_similarity_heatmap(
            similarity, out_dir / OUTPUT_FILES["structural_similarity_heatmap_png"], title=title
        )
    if cka is not None:
        path = out_dir / OUTPUT_FILES["cka_csv"]
        atomic.write_text(path, cka.to_csv(index=False))
        written["cka_csv"] = path
        written["cka_png"] = plots.plot_cka(
            cka, out_dir / OUTPUT_FILES["cka_png"], title=f"Linear CKA with the final model\n{title}"
        )

    files = {
        name: entry
        for name, entry in manifest.get("files", {}).items()
        if name in OUTPUT_FILES.values() and (out_dir / name).is_file()
    }
    for path in written.values():
        files[path.name] = {"sha256": sha256(path), "written_at": _now()}
    kept = sorted(set(files) - {p.name for p in written.values()})
    manifest = {
        "written_by": _WRITER,
        "run_dir": str(run_dir),
        "checkpoint_dir": str(work_dir),
        "files": files,
        "structural_similarity": None if similarity is None else {"source": SIMILARITY_FILE},
        "cka": cka_info,
        "problems": problems,
    }
    atomic.write_json(out_dir / MANIFEST_FILE, manifest)
    written["manifest"] = out_dir / MANIFEST_FILE
    overwritten = sorted(set(replaced) & {p.name for p in written.values()})
    if overwritten:
        log.info("replaced the earlier analysis outputs in %s: %s", out_dir, ", ".join(overwritten))
    if kept:
        log.info("kept earlier analysis outputs not produced this time: %s", ", ".join(kept))
    log.info("analysis of %s written to %s in %.1f s", run_dir, out_dir, time.perf_counter() - started)
    if problems:
        raise IncompleteAnalysisError("; ".join(problems), written)
    return written


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
