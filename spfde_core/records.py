"""Run records: ``results/runs/<reproduction>/<row>/seed<k>/metrics.json`` and ``curve.csv``.

The record is validated against ``schemas/run_record.v1.json`` when written and when read, and
every write is atomic. The curve holds one row per epoch (rewritten after each epoch).
"""

from __future__ import annotations

import csv
import io
import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from spfde_core import atomic

SCHEMA_VERSION = 1
RECORD_FILE = "metrics.json"
CURVE_FILE = "curve.csv"
CURVE_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "train_samples",
    "test_loss",
    "test_acc",
    "train_s",
    "eval_s",
    "train_images_per_s",
    "elapsed_s",
    "cpu_s",
    "load_1m",
)


def is_measurement_column(name: str) -> bool:
    """Curve columns that measure the machine, not the training (times, CPU seconds, load average).

    They differ between two runs of one config on one machine; every other column is reproducible
    (a resumed run's curve equals the uninterrupted run's on all others, tests/train/test_resume.py).
    """
    return name.endswith("_s") or name.startswith("load_")


class RecordError(ValueError):
    """A run record that does not match its schema; the message names the file and the field."""


@cache
def schema() -> dict[str, Any]:
    text = resources.files("spfde_core").joinpath(f"schemas/run_record.v{SCHEMA_VERSION}.json").read_text()
    return json.loads(text)


def _non_finite(node: Any, where: tuple[str, ...] = ()) -> tuple[tuple[str, ...], float] | None:
    """(path, value) of the first NaN or infinity in ``node``, depth first; None when every number is finite."""
    if isinstance(node, float) and not math.isfinite(node):
        return where, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _non_finite(value, (*where, str(key)))
        if found is not None:
            return found
    return None


def validate_record(record: dict[str, Any], source: str = "record") -> None:
    """The schema, plus what JSON Schema cannot say: every number is finite (NaN passes ``minimum``)."""
    import jsonschema  # here: importing the board (planner, runner) needs no schema validator

    bad = _non_finite(record)
    if bad is not None:
        where = "/".join(bad[0]) or "(top level)"
        raise RecordError(f"{source}: invalid run record at '{where}': {bad[1]!r} is not a finite number")
    try:
        jsonschema.validate(record, schema())
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise RecordError(f"{source}: invalid run record at '{where}': {err.message}") from None


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    validate_record(record, str(run_dir / RECORD_FILE))
    path = Path(run_dir) / RECORD_FILE
    atomic.write_json(path, record)
    return path


def read_record(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: no run record here") from None
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    validate_record(record, str(path))
    return record


def write_curve(run_dir: Path, history: list[dict[str, Any]]) -> Path:
    """Per-epoch curve as CSV; columns missing from an epoch (no evaluation) are left empty."""
    extra = sorted({k for row in history for k in row} - set(CURVE_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CURVE_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _format(v) for k, v in row.items()})
    path = Path(run_dir) / CURVE_FILE
    atomic.write_text(path, buffer.getvalue())
    return path


def _format(value: Any) -> Any:
    # repr-precision floats so the CSV round-trips exactly.
    return repr(value) if isinstance(value, float) else value
