"""Paper-reported values: ``reproductions/<name>/paper.csv``, every value with its source.

Columns: table, entry, setting, metric, value, value_high, unit, baseline_entry, baseline_setting,
status, source, note.

- ``status``: ``found`` (one number), ``found_range`` (value .. value_high), ``qualitative`` (a
  claim without a number, in ``note``) or ``not_found`` (``value`` empty; ``source`` says where
  the number would come from). A value is never guessed.
- ``metric``: ``top1`` (test top-1 %, absolute), ``top1_diff`` (percentage points versus the
  baseline row), ``flops_reduction`` (% fewer training FLOPs than the baseline row),
  ``flops_ratio`` (training FLOPs / dense), or a free name the board shows but does not compute.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from spfde_core.config import ConfigError

COLUMNS = (
    "table",
    "entry",
    "setting",
    "metric",
    "value",
    "value_high",
    "unit",
    "baseline_entry",
    "baseline_setting",
    "status",
    "source",
    "note",
)
STATUSES = ("found", "found_range", "qualitative", "not_found")
PAPER_FILE = "paper.csv"


class PaperError(ConfigError):
    """A malformed paper.csv; the message names the file, the line and the column."""


@dataclass(frozen=True)
class PaperValue:
    reproduction: str
    table: str
    entry: str
    setting: str
    metric: str
    value: float | None
    value_high: float | None
    unit: str
    baseline_entry: str
    baseline_setting: str
    status: str
    source: str
    note: str
    line: int

    def shown(self) -> str:
        if self.status == "found" and self.value is not None:
            return f"{self.value:+.2f}" if self.metric == "top1_diff" else f"{self.value:g}"
        if self.status == "found_range":
            return f"{self.value:g} to {self.value_high:g}"
        return "not found" if self.status == "not_found" else "qualitative"


def _number(text: str, path: Path, line: int, column: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise PaperError(f"{path}:{line}: {column}: expected a number or empty, got {text!r}") from None


def load_paper(path: Path) -> list[PaperValue]:
    """Read and check one paper.csv (missing file: no values)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise PaperError(f"{path}:1: header: expected {','.join(COLUMNS)}, got {','.join(reader.fieldnames or [])}")
        for line, raw in enumerate(reader, start=2):
            status = raw["status"].strip()
            if status not in STATUSES:
                raise PaperError(f"{path}:{line}: status: expected one of {', '.join(STATUSES)}, got {status!r}")
            value = _number(raw["value"], path, line, "value")
            high = _number(raw["value_high"], path, line, "value_high")
            if not raw["source"].strip():
                raise PaperError(f"{path}:{line}: source: every row names its source (or where it would come from)")
            if status == "found" and value is None:
                raise PaperError(f"{path}:{line}: value: status found needs a value")
            if status == "found_range" and (value is None or high is None):
                raise PaperError(f"{path}:{line}: value_high: status found_range needs value and value_high")
            if status in ("not_found", "qualitative") and value is not None:
                raise PaperError(f"{path}:{line}: value: must be empty when status is {status} (never guess)")
            rows.append(
                PaperValue(
                    path.parent.name,
                    raw["table"].strip(),
                    raw["entry"].strip(),
                    raw["setting"].strip(),
                    raw["metric"].strip(),
                    value,
                    high,
                    raw["unit"].strip(),
                    raw["baseline_entry"].strip(),
                    raw["baseline_setting"].strip(),
                    status,
                    raw["source"].strip(),
                    raw["note"].strip(),
                    line,
                )
            )
    return rows
