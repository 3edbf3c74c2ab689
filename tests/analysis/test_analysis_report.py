"""End to end: smoke runs (sparse with snapshots, dense) -> analyze_run and the analysis command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reproductions.spfde_neurips22.analysis.cli import main
from reproductions.spfde_neurips22.analysis.report import (
    OUTPUT_FILES,
    AnalysisError,
    IncompleteAnalysisError,
    analyze_run,
)
from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _train(root: Path, row: str, *extra: str) -> tuple[Path, Path]:
    """A smoke run under ``root`` (the ``smoke_overrides`` of tests/conftest.py); returns (run, checkpoint) dirs."""
    overrides = [
        "profile=smoke",
        f"data.prepared_dir={root / 'prepared'}",
        f"run.results_dir={root / 'runs'}",
        f"run.checkpoint_dir={root / 'checkpoints'}",
        "run.reproduction=test",
        f"run.row={row}",
        "train.progress=false",
        *extra,
    ]
    run_training(load_config(overrides))
    return root / "runs" / "test" / row / "seed0", root / "checkpoints" / "test" / row / "seed0"


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory) -> tuple[Path, Path]:
    """MEST (EM&S) for 3 epochs with a mask update every epoch and a model snapshot after every epoch."""
    root = tmp_path_factory.mktemp("sparse")
    extra = ("sparsity=mest_ems", "sparsity.update_every_epochs=1", "train.epochs=3", "run.snapshot_every_epochs=1")
    return _train(root, "mest", *extra)


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory) -> tuple[Path, Path]:
    """A dense 2-epoch run with snapshots (CKA works, structural similarity does not)."""
    return _train(tmp_path_factory.mktemp("dense"), "dense", "run.snapshot_every_epochs=1")


def test_analyze_run_writes_plots_and_tables(sparse_run, tmp_path) -> None:
    run_dir, _ = sparse_run
    out = tmp_path / "out"
    written = analyze_run(run_dir, probe_samples=64, out_dir=out, device="cpu")
    assert set(written) == {*OUTPUT_FILES, "manifest"}
    for key, path in written.items():
        assert path.parent == out and path.is_file()
        if key.endswith("_png"):
            assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000

    # Structural similarity: the run's CSV, unchanged, in tidy form.
    wide = pd.read_csv(run_dir / "structural_similarity.csv")
    tidy = pd.read_csv(written["structural_similarity_csv"])
    back = tidy.pivot(index="epoch", columns="layer", values="similarity")[wide.columns[1:]].reset_index()
    pd.testing.assert_frame_equal(back.rename_axis(columns=None), wide, check_dtype=False)
    assert tidy.groupby("layer")["layer_number"].first().min() == 2  # layer1.0.conv1; stem.conv (1) is dense

    # CKA: every snapshot epoch x the 6 default layers of ResNet-20; the last snapshot is the final model.
    cka = pd.read_csv(written["cka_csv"])
    assert sorted(cka["epoch"].unique()) == [0, 1, 2]
    assert cka["layer_number"].drop_duplicates().tolist() == [1, 5, 9, 12, 16, 20]
    assert cka.loc[cka["epoch"] == 2, "cka"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    assert cka["cka"].between(0, 1 + 1e-9).all() and (cka.loc[cka["epoch"] < 2, "cka"] < 1 - 1e-6).any()

    manifest = json.loads(written["manifest"].read_text())
    assert manifest["cka"]["probe_samples"] == 64 and manifest["cka"]["final_model"] == "last.pt"
    assert set(manifest["files"]) == set(OUTPUT_FILES.values())


def test_explicit_layers_and_a_final_model_without_its_snapshot(sparse_run, tmp_path) -> None:
    run_dir, work_dir = sparse_run
    # Snapshots every 2 epochs of a 3-epoch run: epoch 1 only; the final model (last.pt) is added.
    moved = tmp_path / "ck"
    (moved / "snapshots").mkdir(parents=True)
    shutil.copy(work_dir / "last.pt", moved / "last.pt")
    shutil.copy(work_dir / "snapshots" / "epoch0002.pt", moved / "snapshots")
    written = analyze_run(run_dir, moved, layers="layer2.0.conv1,3", probe_samples=32, out_dir=tmp_path / "o")
    cka = pd.read_csv(written["cka_csv"])
    assert cka[["epoch", "layer", "snapshot"]].to_dict("records") == [
        {"epoch": 1, "layer": "layer2.0.conv1", "snapshot": "snapshots/epoch0002.pt"},
        {"epoch": 1, "layer": "layer1.0.conv2", "snapshot": "snapshots/epoch0002.pt"},
        {"epoch": 2, "layer": "layer2.0.conv1", "snapshot": "last.pt"},
        {"epoch": 2, "layer": "layer1.0.conv2", "snapshot": "last.pt"},
    ]
    assert cka.loc[cka["epoch"] == 2, "cka"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(AnalysisError, match="unknown layer 'conv99'"):
        analyze_run(run_dir, moved, layers=["conv99"], out_dir=tmp_path / "o2")


def test_reruns_replace_only_their_own_files(sparse_run, tmp_path, caplog) -> None:
    run_dir, work_dir = sparse_run
    no_snapshots = tmp_path / "empty"  # keeps the test to the cheap structural-similarity part
    no_snapshots.mkdir()
    out = tmp_path / "out"
    with pytest.raises(IncompleteAnalysisError):
        analyze_run(run_dir, no_snapshots, out_dir=out)
    with caplog.at_level("INFO", logger="spfde_neurips22.analysis"), pytest.raises(IncompleteAnalysisError):
        analyze_run(run_dir, no_snapshots, out_dir=out)  # unchanged outputs of ours: replaced, and said so
    assert "replaced the earlier analysis outputs" in caplog.text
    (out / "structural_similarity.png").write_bytes(b"my own plot")
    with pytest.raises(AnalysisError, match="structural_similarity.png exists and is not an unchanged output"):
        analyze_run(run_dir, no_snapshots, out_dir=out)
    assert (out / "structural_similarity.png").read_bytes() == b"my own plot"
    user = tmp_path / "user"
    user.mkdir()
    (user / "cka.csv").write_text("mine\n")
    with pytest.raises(AnalysisError, match="cka.csv exists"):
        analyze_run(run_dir, no_snapshots, out_dir=user)
    (user / "cka.csv").unlink()
    (user / "analysis.json").write_text("{}")
    with pytest.raises(AnalysisError, match="analysis.json exists and was not written by this analysis"):
        analyze_run(run_dir, no_snapshots, out_dir=user)


def test_cli_run_without_snapshots_still_plots_structural_similarity(sparse_run, tmp_path, capsys) -> None:
    run_dir, _ = sparse_run
    empty = tmp_path / "no-snapshots"
    empty.mkdir()
    out = tmp_path / "out"
    assert main([str(run_dir), "--checkpoint-dir", str(empty), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "no model snapshots" in captured.err and "run.snapshot_every_epochs=N" in captured.err
    assert str(out / "structural_similarity.png") in captured.out
    assert (out / "structural_similarity.png").is_file() and not (out / "cka.png").exists()


def test_cli_dense_run(dense_run, tmp_path, capsys) -> None:
    run_dir, _ = dense_run
    # With snapshots: CKA is written (SpFDE Fig. 1b compares dense and sparse), structural similarity is not.
    assert main([str(run_dir), "--probe-samples", "32", "--layers", "1,20", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "dense run" in captured.err and "needs a sparse run" in captured.err
    assert (run_dir / "analysis" / "cka.png").is_file()
    assert not (run_dir / "analysis" / "structural_similarity.png").exists()
    # Without snapshots: nothing to do at all.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(run_dir), "--checkpoint-dir", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nothing to analyse" in err and "needs a sparse run" in err and "run.snapshot_every_epochs" in err
    assert not (tmp_path / "o").exists()


def test_cli_no_run_record(tmp_path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no run record here" in capsys.readouterr().err
