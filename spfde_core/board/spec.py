"""Reproduction specs: ``reproductions/<name>/rows.yaml`` expanded into the runs of a profile.

A spec names the paper, and per table its settings (columns, e.g. sparsity 90/95/98%) and entries
(rows: a method entry as explicit Hydra overrides). A run is (reproduction, table, entry, setting,
seed) under one profile; its record lives at ``results/runs/<reproduction>/<row>/seed<k>`` with
``row = <profile>-<table>-<entry>-<setting>``, so profiles never share a path or a cell.

Overrides are layered in this order (later wins): the profile's, the table's for that profile,
the setting's, the entry's, the entry's for that profile, then ``run.*``.
``spfde_core`` reads these files as data; it never imports from ``reproductions/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spfde_core.config import ConfigError

PROFILES = ("smoke", "cpu", "paper")
SPEC_FILE = "rows.yaml"
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class SpecError(ConfigError):
    """A malformed reproduction spec; the message names the file and the field."""


@dataclass(frozen=True)
class Setting:
    id: str
    label: str
    overrides: tuple[str, ...]
    profiles: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    id: str
    label: str
    overrides: tuple[str, ...]
    profile_overrides: dict[str, tuple[str, ...]]
    settings: tuple[str, ...]
    profiles: tuple[str, ...]
    runnable: bool
    note: str
    in_paper: bool


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    paper_ref: str
    profiles: tuple[str, ...]
    profile_overrides: dict[str, tuple[str, ...]]
    settings: tuple[Setting, ...]
    entries: tuple[Entry, ...]
    note: str

    def setting(self, sid: str) -> Setting:
        return next(s for s in self.settings if s.id == sid)


@dataclass(frozen=True)
class Run:
    reproduction: str
    table: str
    entry: str
    setting: str
    profile: str
    seed: int
    overrides: tuple[str, ...]
    """Every override of the run, run.* keys included: the exact `spfde train` arguments."""

    @property
    def row(self) -> str:
        return row_id(self.profile, self.table, self.entry, self.setting)

    @property
    def key(self) -> str:
        """DVC stage key: ``train@<key>``."""
        return f"{self.reproduction}-{self.row}-seed{self.seed}"

    @property
    def method_overrides(self) -> tuple[str, ...]:
        return tuple(o for o in self.overrides if not o.startswith("run."))


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    paper: str
    path: Path
    profiles: dict[str, dict[str, Any]]
    tables: tuple[Table, ...]
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, tid: str) -> Table:
        return next(t for t in self.tables if t.id == tid)

    def seeds(self, profile: str) -> list[int]:
        return list(self.profiles.get(profile, {}).get("seeds", []))

    def runs(self, profile: str, seeds: list[int] | None = None, runnable_only: bool = True) -> list[Run]:
        """Every run of this reproduction under ``profile`` (deterministic order)."""
        if profile not in self.profiles:
            return []
        base = tuple(self.profiles[profile].get("overrides", []))
        out = []
        for table in self.tables:
            if profile not in table.profiles:
                continue
            for entry in table.entries:
                if profile not in entry.profiles or (runnable_only and not entry.runnable):
                    continue
                for sid in entry.settings:
                    setting = table.setting(sid)
                    if profile not in setting.profiles:
                        continue
                    overrides = (
                        *base,
                        *table.profile_overrides.get(profile, ()),
                        *setting.overrides,
                        *entry.overrides,
                        *entry.profile_overrides.get(profile, ()),
                    )
                    for seed in self.seeds(profile) if seeds is None else seeds:
                        row = row_id(profile, table.id, entry.id, sid)
                        run_keys = (f"run.reproduction={self.name}", f"run.row={row}", f"run.seed={seed}")
                        out.append(Run(self.name, table.id, entry.id, sid, profile, seed, (*overrides, *run_keys)))
        return out

    def rows(self) -> dict[str, tuple[Table, Entry, Setting, str]]:
        """row id -> (table, entry, setting, profile) for every row of every profile, runnable or not."""
        found = {}
        for profile in PROFILES:
            for table in self.tables:
                if profile not in table.profiles:
                    continue
                for entry in table.entries:
                    if profile not in entry.profiles:
                        continue
                    for sid in entry.settings:
                        setting = table.setting(sid)
                        if profile in setting.profiles:
                            found[row_id(profile, table.id, entry.id, sid)] = (table, entry, setting, profile)
        return found


def row_id(profile: str, table: str, entry: str, setting: str) -> str:
    return f"{profile}-{table}-{entry}-{setting}"


def _strs(value: Any, where: str, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise SpecError(f"{path}: {where}: expected a list of key=value overrides, got {value!r}")
    for v in value:
        if v.split("=", 1)[0].startswith("run."):
            raise SpecError(f"{path}: {where}: run.* keys are set by the planner, not in a spec ({v})")
    return tuple(value)


def _profiles(value: Any, where: str, path: Path, default: tuple[str, ...] = PROFILES) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or any(p not in PROFILES for p in value):
        raise SpecError(f"{path}: {where}: expected a list of profiles among {', '.join(PROFILES)}, got {value!r}")
    return tuple(value)


def _id(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise SpecError(f"{path}: {where}: expected an id of lowercase letters, digits and _, got {value!r}")
    return value


def _profile_overrides(value: Any, where: str, path: Path) -> dict[str, tuple[str, ...]]:
    value = value or {}
    if not isinstance(value, dict) or any(p not in PROFILES for p in value):
        raise SpecError(f"{path}: {where}: expected a mapping profile -> overrides, got {value!r}")
    return {p: _strs(v, f"{where}.{p}", path) for p, v in value.items()}


def read_mapping(path: Path, error: type[ConfigError]) -> dict[str, Any]:
    """The YAML mapping in ``path`` (``rows.yaml``, ``claims.yaml``); ``error`` if unreadable or not a mapping."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: cannot be read ({err})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return raw


def load_spec(path: Path) -> Spec:
    """Parse and check one ``rows.yaml`` (a directory is read as ``<dir>/rows.yaml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    raw = read_mapping(path, SpecError)
    name = _id(raw.get("reproduction"), "reproduction", path)
    if name != path.parent.name:
        raise SpecError(f"{path}: reproduction: {name!r} must equal its folder name {path.parent.name!r}")
    profiles = raw.get("profiles") or {}
    for p, node in profiles.items():
        if p not in PROFILES:
            raise SpecError(f"{path}: profiles.{p}: unknown profile (expected {', '.join(PROFILES)})")
        _strs(node.get("overrides"), f"profiles.{p}.overrides", path)
        seeds = node.get("seeds")
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise SpecError(f"{path}: profiles.{p}.seeds: expected a non-empty list of integers, got {seeds!r}")
    tables = []
    for ti, t in enumerate(raw.get("tables") or []):
        tw = f"tables[{ti}]"
        tid = _id(t.get("id"), f"{tw}.id", path)
        settings = []
        for si, s in enumerate(t.get("settings") or []):
            sw = f"{tw}.settings[{si}]"
            settings.append(
                Setting(
                    _id(s.get("id"), f"{sw}.id", path),
                    str(s.get("label", s.get("id"))),
                    _strs(s.get("overrides"), f"{sw}.overrides", path),
                    _profiles(s.get("profiles"), f"{sw}.profiles", path),
                )
            )
        if not settings:
            raise SpecError(f"{path}: {tw}.settings: a table needs at least one setting (column)")
        setting_ids = [s.id for s in settings]
        entries = []
        for ei, e in enumerate(t.get("entries") or []):
            ew = f"{tw}.entries[{ei}]"
            chosen = e.get("settings", setting_ids)
            if not isinstance(chosen, list) or any(c not in setting_ids for c in chosen):
                raise SpecError(f"{path}: {ew}.settings: expected a subset of {setting_ids}, got {chosen!r}")
            runnable = bool(e.get("runnable", True))
            note = str(e.get("note", ""))
            if not runnable and not note:
                raise SpecError(f"{path}: {ew}.note: a row that is not runnable must say why")
            entries.append(
                Entry(
                    _id(e.get("id"), f"{ew}.id", path),
                    str(e.get("label", e.get("id"))),
                    _strs(e.get("overrides"), f"{ew}.overrides", path),
                    _profile_overrides(e.get("profile_overrides"), f"{ew}.profile_overrides", path),
                    tuple(chosen),
                    _profiles(e.get("profiles"), f"{ew}.profiles", path),
                    runnable,
                    note,
                    bool(e.get("in_paper", True)),
                )
            )
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids) or len(set(setting_ids)) != len(setting_ids):
            raise SpecError(f"{path}: {tw}: entry and setting ids must be unique within a table")
        tables.append(
            Table(
                tid,
                str(t.get("title", tid)),
                str(t.get("paper_ref", "")),
                _profiles(t.get("profiles"), f"{tw}.profiles", path),
                _profile_overrides(t.get("profile_overrides"), f"{tw}.profile_overrides", path),
                tuple(settings),
                tuple(entries),
                str(t.get("note", "")),
            )
        )
    if len({t.id for t in tables}) != len(tables):
        raise SpecError(f"{path}: tables: table ids must be unique")
    return Spec(name, str(raw.get("title", name)), str(raw.get("paper", "")), path, profiles, tuple(tables))


def load_specs(root: Path) -> dict[str, Spec]:
    """Every ``<root>/<name>/rows.yaml``, by reproduction name (sorted)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    specs = [load_spec(p) for p in sorted(root.glob(f"*/{SPEC_FILE}"))]
    return {s.name: s for s in specs}
