"""Exact resume at the last kill point: after the last epoch's checkpoint, before the record is written.

Nothing trains when such a run resumes (every epoch is checkpointed), so every field the record reads from
state that only a hook or an optimizer step sets must come back from the checkpoint (issue 17: MEST's
``sparsity.choices.update_every_epochs`` and the optimizer's ``update.eager_params_last_step`` did not).
"""

from __future__ import annotations

import re
import shutil

import pytest

from spfde_core import records
from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke

CLOCKS = ("started_at", "finished_at", "resumed_from_epoch")


class Killed(Exception):
    pass


def _without_clocks(record: dict) -> dict:
    """The record less what any two runs measure differently: timestamps, timing, the process's peak RSS, and
    whether a sparse-kernel decision was measured now or read from the per-machine cache (the first run
    measures, the later ones read its times: the same times and paths, spfde_core/ops/kernel_probe.py)."""
    out = {k: v for k, v in record.items() if k != "timing"}
    out["run"] = {k: v for k, v in record["run"].items() if k not in CLOCKS}
    out["cost"] = {**record["cost"], "memory": {**record["cost"]["memory"], "measured": None}}
    if "sparse_kernels" in record:
        layers = [
            {
                **layer,
                "last_masked_reason": re.sub(r", (cached|measured now)\)$", ")", layer["last_masked_reason"] or ""),
                "decisions": [{**d, "cached": None} for d in layer["decisions"]],
            }
            for layer in record["sparse_kernels"]["layers"]
        ]
        out["sparse_kernels"] = {**record["sparse_kernels"], "layers": layers}
    return out


def _tree_diff(a: object, b: object, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _tree_diff(a.get(k), b.get(k), f"{where}.{k}")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.mark.parametrize(
    "method",
    [
        ["sparsity=mest_ems"],
        ["sparsity=mest_ems", "freezing=spfde_progressive", "freezing.target_reduction=0.05", "sieving=spfde_circular"],
    ],
    ids=["mest_ems", "spfde"],
)
def test_kill_after_last_checkpoint_before_record_resumes_into_the_same_record(
    smoke_overrides, tmp_path, monkeypatch, method
) -> None:
    overrides = [*smoke_overrides, *method, "train.epochs=3"]
    whole = run_training(load_config(overrides))  # a fresh config per call, as each `spfde train` composes one
    shutil.rmtree(tmp_path / "runs")  # the same paths again (they are part of the recorded config)
    shutil.rmtree(tmp_path / "checkpoints")

    write_record = records.write_record

    def killed(run_dir, record):  # the process dies here: every epoch checkpointed, no record yet
        raise Killed

    monkeypatch.setattr(records, "write_record", killed)
    with pytest.raises(Killed):
        run_training(load_config(overrides))
    monkeypatch.setattr(records, "write_record", write_record)
    resumed = run_training(load_config(overrides))  # the same command again: nothing left to train, only the record

    assert resumed["run"]["resumed_from_epoch"] == [3]
    diffs = _tree_diff(_without_clocks(resumed), _without_clocks(whole))
    assert not diffs, "\n".join(diffs)
    assert records.read_record(tmp_path / "runs" / "test" / "smoke" / "seed0" / "metrics.json") == resumed
