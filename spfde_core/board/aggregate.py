"""Cells: the records of one (reproduction, table, entry, setting) under one protocol, aggregated.

A protocol is (profile, dataset name and content hash, model and width, epochs): records that
differ in any of these never share a cell, a table or a Pareto front.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from scipy import stats

from spfde_core.board.collect import Record
from spfde_core.board.spec import Spec

UNLISTED = "(unlisted)"


@dataclass(frozen=True)
class Protocol:
    profile: str
    dataset: str
    data_sha256: str
    model: str
    width: float | None
    epochs: int

    @property
    def id(self) -> str:
        width = "" if self.width is None else f"w{self.width:g}"
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:6]
        return f"{self.profile}-{self.dataset}-{self.model}{width}-{self.epochs}ep-{self.data_sha256[:8]}-{digest}"


def protocol_of(record: dict[str, Any]) -> Protocol:
    config = record["config"]
    return Protocol(
        record["run"]["profile"],
        record["data"]["name"],
        record["data"]["content_sha256"],
        config["model"]["name"],
        config["model"].get("width"),
        int(config["train"]["epochs"]),
    )


@dataclass
class Cell:
    reproduction: str
    table: str
    entry: str
    setting: str
    label: str
    setting_label: str
    protocol: Protocol
    records: list[Record] = field(default_factory=list)
    pareto_rank: int | None = None

    order: tuple = ()

    # --- per-seed values -------------------------------------------------------------------
    def _values(self, getter) -> list[float]:  # noqa: ANN001 - a record -> value | None callable
        out = []
        for r in self.records:
            try:
                value = getter(r.data)
            except (KeyError, TypeError):
                value = None
            if value is not None:
                out.append(float(value))
        return out

    @property
    def seeds(self) -> list[int]:
        return [r.run["seed"] for r in self.records]

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def top1(self) -> list[float]:
        return self._values(lambda d: 100.0 * d["results"]["final_top1"])

    @property
    def top1_mean(self) -> float:
        return mean(self.top1)

    @property
    def top1_ci(self) -> tuple[float, float] | None:
        """95% t-interval of the mean over seeds (scipy.stats.t); None for one seed."""
        return t_interval(self.top1)

    @property
    def top1_std(self) -> float | None:
        return stdev(self.top1) if self.n > 1 else None

    @property
    def best_top1_mean(self) -> float:
        return mean(self._values(lambda d: 100.0 * d["results"]["best_top1"]))

    def _mean(self, getter) -> float | None:  # noqa: ANN001
        values = self._values(getter)
        return mean(values) if len(values) == self.n and values else None

    @property
    def flops_ratio(self) -> float | None:
        return self._mean(lambda d: d["cost"]["training_flops"]["ratio_to_dense"])

    @property
    def til_top1(self) -> list[float]:
        """Continual runs: per seed, the final task-IL average accuracy (%, ``continual.final_til_avg_acc``)."""
        return self._values(lambda d: 100.0 * d["continual"]["final_til_avg_acc"])

    @property
    def til_top1_mean(self) -> float | None:
        """Mean over seeds of the task-IL accuracy; None unless every seed has one (non-continual cells)."""
        return self._mean(lambda d: 100.0 * d["continual"]["final_til_avg_acc"])

    @property
    def til_top1_ci(self) -> tuple[float, float] | None:
        """95% t-interval of the task-IL mean over seeds, as ``top1_ci``; None for one seed or no task-IL."""
        return t_interval(self.til_top1) if self.til_top1_mean is not None else None

    @property
    def forgetting(self) -> float | None:
        """Continual runs: mean over seeds of the final average forgetting (%, docs/continual.md); else None."""
        return self._mean(lambda d: 100.0 * d["continual"]["final_forgetting"])

    @property
    def memory_mib(self) -> float | None:
        """SpFDE's memory model (fp32, batch 64), average over training, MiB."""
        return self._mean(lambda d: d["cost"]["memory"]["model"]["avg_bytes"] / 2**20)

    @property
    def peak_rss_mib(self) -> float | None:
        return self._mean(lambda d: d["cost"]["memory"]["measured"]["cpu_peak_rss_bytes"] / 2**20)

    @property
    def wall_min(self) -> float:
        return mean(self._values(lambda d: d["timing"]["wall_clock_s"] / 60.0))

    @property
    def s_per_epoch(self) -> float:
        return mean(self._values(lambda d: d["timing"]["wall_clock_s"] / d["results"]["epochs"]))

    @property
    def precision_mix(self) -> str:
        """The precisions the cell pools, e.g. ``bf16`` or ``bf16 2, fp32 1`` (docs/hardware.md: one cell)."""
        counts = Counter(str(r.data["config"]["train"].get("precision", "unknown")) for r in self.records)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{p} {k}" for p, k in sorted(counts.items()))

    @property
    def devices(self) -> list[str]:
        return sorted({str(r.data["provenance"]["device"].get("name")) for r in self.records})

    @property
    def sparsity(self) -> float:
        values = self._values(lambda d: d["config"]["sparsity"].get("target", 0.0))
        return values[0] if values else 0.0

    @property
    def method(self) -> str:
        config = self.records[0].data["config"]
        return " + ".join(str(config[a]["name"]) for a in ("sparsity", "freezing", "sieving"))


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    n = len(values)
    if n < 2:
        return None
    m, s = mean(values), stdev(values)
    if s == 0:
        return (m, m)
    low, high = stats.t.interval(confidence, n - 1, loc=m, scale=s / math.sqrt(n))
    return (float(low), float(high))


def build_cells(records: list[Record], specs: dict[str, Spec]) -> list[Cell]:
    """Group records into cells; never across protocols; order = spec order, then unlisted rows."""
    cells: dict[tuple, Cell] = {}
    for record in records:
        run = record.run
        spec = specs.get(run["reproduction"])
        known = spec.rows().get(run["row"]) if spec else None
        if known:
            table, entry, setting, _ = known
            t_index = list(spec.tables).index(table)
            e_index = list(table.entries).index(entry)
            ids = (table.id, entry.id, setting.id)
            labels = (entry.label, setting.label)
            order = (0, t_index, e_index)
        else:
            ids = (UNLISTED, run["row"], "-")
            labels = (run["row"], "-")
            order = (1, 0, 0)
        protocol = protocol_of(record.data)
        key = (run["reproduction"], *ids, protocol)
        if key not in cells:
            cells[key] = Cell(run["reproduction"], *ids, *labels, protocol, order=order)
        cells[key].records.append(record)
    for cell in cells.values():
        cell.records.sort(key=lambda r: (r.run["seed"], r.path.as_posix()))
    return sorted(cells.values(), key=lambda c: (c.reproduction, c.order, c.table, c.protocol.id, c.entry, c.setting))


def pareto_ranks(points: list[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting of (accuracy, flops ratio): rank 1 = the front (max accuracy, min FLOPs)."""
    ranks = [0] * len(points)
    remaining = set(range(len(points)))
    rank = 0
    while remaining:
        rank += 1
        front = {
            i
            for i in remaining
            if not any(
                points[j][0] >= points[i][0] and points[j][1] <= points[i][1] and points[j] != points[i]
                for j in remaining
            )
        }
        for i in front:
            ranks[i] = rank
        remaining -= front
    return ranks


def rank_protocol(cells: list[Cell]) -> list[Cell]:
    """Cells of one protocol ranked on the accuracy/training-FLOPs Pareto front (no FLOPs: unranked, last)."""
    ranked = [c for c in cells if c.flops_ratio is not None]
    for cell, rank in zip(ranked, pareto_ranks([(c.top1_mean, c.flops_ratio) for c in ranked]), strict=True):
        cell.pareto_rank = rank
    return sorted(
        cells,
        key=lambda c: (
            c.pareto_rank if c.pareto_rank is not None else 10**9,
            -c.top1_mean,
            c.flops_ratio if c.flops_ratio is not None else math.inf,
            c.reproduction,
            c.table,
            c.entry,
            c.setting,
        ),
    )


def relative_link(target: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()
