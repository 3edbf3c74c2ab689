"""Read every run record, validate it, and refuse inconsistent ones (naming the file and the field)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spfde_core.board.spec import Spec
from spfde_core.records import RECORD_FILE, RecordError, read_record

GROUPS = ("data", "model", "sparsity", "freezing", "sieving")


@dataclass(frozen=True)
class Record:
    path: Path
    """The metrics.json file."""
    data: dict[str, Any]

    @property
    def run(self) -> dict[str, Any]:
        return self.data["run"]


def _get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def check_overrides(record: dict[str, Any], overrides: tuple[str, ...], where: str) -> None:
    """The record's resolved config must carry every value its row declares (ecosystem notes Sec. 7.2).

    A row's overrides are layered (spec.py: the profile's, the table's, the setting's, the entry's, then the
    entry's for that profile), so a key set twice is declared by its last value, as Hydra applies them.
    """
    config = record["config"]
    last = {o.partition("=")[0]: o for o in overrides}
    for override in last.values():
        key, _, raw = override.partition("=")
        if key == "profile":
            field, expected = "config.profile", raw
            actual = config.get("profile")
        elif key in GROUPS:
            field, expected = f"config.{key}.name", raw
            actual = config.get(key, {}).get("name")
        elif "." in key and key.split(".")[0] in config:
            field, expected = f"config.{key}", yaml.safe_load(raw)
            try:
                actual = _get(config, key)
            except KeyError:
                raise RecordError(
                    f"{where}: invalid run record at '{field}': missing, its row sets {override}"
                ) from None
        else:  # groups without a name field (optim) and unknown keys: nothing to compare
            continue
        if not _same(expected, actual):
            raise RecordError(
                f"{where}: inconsistent run record at '{field}': {actual!r}, but its row declares {override}"
            )


def check_record(record: dict[str, Any], path: Path, runs_root: Path, specs: dict[str, Spec]) -> None:
    """Consistency beyond the schema: path, profile, dataset, epochs, and the row's declared config."""
    where = str(path)
    run, config = record["run"], record["config"]
    try:
        rel = path.parent.relative_to(runs_root).parts
    except ValueError:
        rel = ()
    if len(rel) == 3:
        for field, expected, actual in (
            ("run.reproduction", rel[0], run["reproduction"]),
            ("run.row", rel[1], run["row"]),
            ("run.seed", rel[2], f"seed{run['seed']}"),
        ):
            if expected != actual:
                raise RecordError(
                    f"{where}: inconsistent run record at '{field}': {actual!r} but its path says {expected!r}"
                )
    if run["profile"] != config.get("profile"):
        raise RecordError(
            f"{where}: inconsistent run record at 'run.profile': {run['profile']!r} but config.profile is "
            f"{config.get('profile')!r}"
        )
    if record["data"]["name"] != config["data"].get("name"):
        raise RecordError(
            f"{where}: inconsistent run record at 'data.name': {record['data']['name']!r} but "
            f"config.data.name is {config['data'].get('name')!r}"
        )
    if record["results"]["epochs"] != config["train"].get("epochs"):
        raise RecordError(
            f"{where}: inconsistent run record at 'results.epochs': {record['results']['epochs']} but "
            f"config.train.epochs is {config['train'].get('epochs')}"
        )
    if record["results"]["best_top1"] + 1e-12 < record["results"]["final_top1"]:
        raise RecordError(f"{where}: inconsistent run record at 'results.best_top1': below final_top1")
    spec = specs.get(run["reproduction"])
    if spec is None:
        return
    known = spec.rows().get(run["row"])
    if known is None:
        return
    table, entry, setting, profile = known
    if profile != run["profile"]:
        raise RecordError(
            f"{where}: inconsistent run record at 'run.profile': {run['profile']!r} but row "
            f"{run['row']} belongs to profile {profile!r}"
        )
    runs = [r for r in spec.runs(profile, seeds=[run["seed"]]) if r.row == run["row"]]
    if runs:
        check_overrides(record, runs[0].method_overrides, where)


def collect(
    runs_root: Path, specs: dict[str, Spec], skip_invalid: bool = False
) -> tuple[list[Record], list[tuple[str, str]]]:
    """(valid records sorted by path, skipped (path, reason)); raises RecordError unless skip_invalid."""
    runs_root = Path(runs_root)
    good, skipped = [], []
    paths = sorted(runs_root.rglob(RECORD_FILE)) if runs_root.is_dir() else []
    for path in paths:
        try:
            record = read_record(path)
            check_record(record, path, runs_root, specs)
        except RecordError as err:
            if not skip_invalid:
                raise
            skipped.append((path.as_posix(), str(err)))
            continue
        good.append(Record(path, record))
    # One (reproduction, row, seed) is one run: a copy elsewhere under runs_root would count a seed twice.
    claims: dict[tuple[str, str, int], list[Record]] = {}
    for r in good:
        claims.setdefault((r.run["reproduction"], r.run["row"], r.run["seed"]), []).append(r)
    for (reproduction, row, seed), same in claims.items():
        if len(same) < 2:
            continue
        files = " and ".join(str(r.path) for r in same)
        reason = f"{reproduction}/{row} seed {seed} is claimed by {len(same)} records: {files} (keep one)"
        if not skip_invalid:
            raise RecordError(f"duplicate run record: {reason}")
        skipped.extend((r.path.as_posix(), f"duplicate run record: {reason}") for r in same)
    duplicated = {r.path for same in claims.values() if len(same) > 1 for r in same}
    good = [r for r in good if r.path not in duplicated]
    return good, sorted(skipped)
