"""The DVC plan: which stages `dvc repro` runs for the profile chosen in ``params.yaml``.

``dvc.yaml`` is static; its ``foreach`` stages read ``datasets`` and ``runs`` from ``params.yaml``,
which ``spfde board plan`` writes from the reproduction specs. ``dvc repro`` never composes Hydra
configs (reference notes, ecosystem Sec. 7): each stage calls ``spfde train`` with explicit
overrides, and lists the config files its composition read as dependencies, so editing
``spfde_core/conf/sparsity/rigl.yaml`` re-runs exactly the RigL runs.

By default a plan holds only the runs whose record exists (``results/runs/.../metrics.json``), so
``dvc repro`` of the committed plan retrains nothing on a fresh clone; ``--all`` (``include_missing``) plans
the runs without a record too, and then ``dvc repro`` trains them. ``pending_summary`` says how many runs a
command is about to start and the estimated time, before it starts them.

``spfde board run --jobs N`` (``runner``) trains the planned runs in parallel outside DVC (``dvc repro``
runs one stage at a time); ``dvc commit -f prepare train`` then records them so ``dvc repro`` only
rebuilds the leaderboard.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from spfde_core.board.spec import PROFILES, Run, SpecError, load_specs
from spfde_core.config import ConfigError

log = logging.getLogger("spfde_core.board")

PARAMS_FILE = "params.yaml"
AXES = ("data", "model", "optim", "sparsity", "freezing", "sieving", "profile")
CONF_ROOT = "spfde_core/conf"
PLUGIN_DEP = "spfde_core/plugins.py"
HEADER = """\
# What `dvc repro` regenerates. Written by `spfde board plan --profile <smoke|cpu|paper>` from
# reproductions/*/rows.yaml: change the profile or the rows with that command, not by hand
# (`dvc repro` refuses a stale plan: the prepare stages run `spfde board plan --check` first).
#   profile:  the budget every planned run uses (never mixed in one leaderboard cell)
#   plan:     how this file was planned (reproductions and row filter, seeds; runs: recorded = only runs
#             whose record exists, so `dvc repro` trains nothing; all = also the missing ones, `--all`)
#   datasets: one prepare@<name> stage each; runs: one train@<key> stage per (reproduction, row, seed)
"""


class PlanError(ConfigError):
    """A plan that cannot be made or is stale; the message says which command fixes it."""


def _compose(overrides: list[str]) -> tuple[Any, dict[str, str]]:
    """(validated config, group choices) of a run's overrides, as `spfde train` would compose them."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from spfde_core.cli import UsageError, load_config
    from spfde_core.config import validate

    load_config([])  # registers every schema and external method once
    try:
        with initialize_config_module(config_module="spfde_core.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except Exception as err:  # noqa: BLE001 - any composition failure names the row below
        raise UsageError(f"invalid config: {err}") from None
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items() if "/" not in k}
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)
    return cfg, choices


def record_file(repo: Path, run: Run) -> Path:
    """Where ``run``'s record is written (``run.results_dir`` is never overridden by a row)."""
    return Path(repo) / "results" / "runs" / run.reproduction / run.row / f"seed{run.seed}" / "metrics.json"


def _conf_file(axis: str, option: str | None, repo: Path) -> str:
    path = f"{CONF_ROOT}/{axis}/{option}.yaml"
    # An external method (entry point) has no yaml: its stages depend on the plugin loader instead.
    return path if option is not None and (repo / path).exists() else PLUGIN_DEP


def select(runs: list[Run], only: list[str] | None) -> list[Run]:
    """Runs whose stage key or ``<reproduction>/<row>`` matches one of the glob patterns."""
    if not only:
        return runs
    return [
        r
        for r in runs
        if any(fnmatch.fnmatch(r.key, p) or fnmatch.fnmatch(f"{r.reproduction}/{r.row}", p) for p in only)
    ]


def plan(
    repo: Path,
    profile: str,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
    reproductions: list[str] | None = None,
    include_missing: bool = False,
) -> dict[str, Any]:
    """The params.yaml content for ``profile``: datasets and runs (stage key -> arguments and deps).

    Only the runs whose record exists, unless ``include_missing`` (``spfde board plan --all``): those
    are the runs ``dvc repro`` would train.
    """
    from spfde_core.train.build import prepared_path
    from spfde_core.train.run import RunPaths

    if profile not in PROFILES:
        raise PlanError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    repo = Path(repo)
    specs = load_specs(repo / "reproductions")
    if reproductions:
        unknown = sorted(set(reproductions) - set(specs))
        if unknown:
            raise PlanError(f"unknown reproduction(s) {unknown}; known: {', '.join(specs)}")
        specs = {k: v for k, v in specs.items() if k in reproductions}
    runs = select([r for s in specs.values() for r in s.runs(profile, seeds)], only)
    if not runs:
        raise PlanError(f"no runs match profile={profile} reproductions={reproductions} only={only}")
    if not include_missing:
        runs = [r for r in runs if record_file(repo, r).exists()]
        if not runs:
            raise PlanError(
                f"no run of profile={profile} (reproductions={reproductions} only={only}) has a record yet; "
                "`spfde board plan --all ...` plans the runs without one (then `dvc repro` trains them)"
            )
    composed: dict[tuple[str, ...], tuple[Any, dict[str, str]]] = {}
    datasets: dict[str, dict[str, str]] = {}
    out_runs: dict[str, dict[str, str]] = {}
    for run in runs:
        key = run.method_overrides
        if key not in composed:
            try:
                composed[key] = _compose(list(key))
            except Exception as err:  # noqa: BLE001 - name the row whose config fails
                raise PlanError(f"{run.reproduction}/{run.row}: {err}") from None
        cfg, choices = composed[key]
        data_dir = prepared_path(cfg.data).as_posix()
        name = Path(data_dir).parent.name if cfg.data.name == "synthetic" else cfg.data.name
        datasets.setdefault(name, {"args": f"{cfg.data.name} profile={profile}", "out": data_dir})
        from omegaconf import OmegaConf

        full = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o for o in run.overrides if o.startswith("run.")]))
        record_dir = RunPaths.of(full, "unused").run_dir.as_posix()
        item = {"args": " ".join(run.overrides), "out": record_dir, "data": data_dir}
        for axis in AXES:
            item[f"conf_{axis}"] = _conf_file(axis, choices.get(axis), repo)
        out_runs[run.key] = item
    return {
        "profile": profile,
        "plan": {
            "reproductions": sorted(specs),
            "only": list(only or []),
            "seeds": seeds,
            "runs": "all" if include_missing else "recorded",
        },
        "datasets": dict(sorted(datasets.items())),
        "runs": out_runs,
    }


def dump(params: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(params, sort_keys=False, width=1000, default_flow_style=False)


def write_plan(repo: Path, profile: str, **kwargs: Any) -> Path:
    params = plan(repo, profile, **kwargs)
    path = Path(repo) / PARAMS_FILE
    path.write_text(dump(params))
    log.info("planned %d runs (%s profile) -> %s", len(params["runs"]), profile, path)
    return path


def plan_command(params: dict[str, Any], repo: Path) -> str:
    """The ``spfde board plan`` command that writes ``params`` again (for messages)."""
    how = params.get("plan") or {}
    words = ["spfde board plan", f"--profile {params.get('profile')}"]
    if how.get("runs", "all") == "all":
        words.append("--all")
    chosen = how.get("reproductions") or []
    try:
        every = set(load_specs(Path(repo) / "reproductions"))
    except SpecError:
        every = set(chosen)
    if chosen and set(chosen) != every:
        words += [f"--reproduction {r}" for r in chosen]
    words += [f"--only '{p}'" for p in how.get("only") or []]
    if how.get("seeds") is not None:
        words.append("--seeds " + ",".join(map(str, how["seeds"])))
    return " ".join(words)


def read_params(repo: Path) -> dict[str, Any]:
    path = Path(repo) / PARAMS_FILE
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PlanError(f"{path}: cannot be read ({err}); run `spfde board plan --profile cpu`") from None
    return params


def check_plan(repo: Path) -> None:
    """Fail unless params.yaml's runs are what the specs give for its profile (cheap: no composition)."""
    params = read_params(repo)
    profile, how = params.get("profile"), params.get("plan") or {}
    if profile not in PROFILES:
        raise PlanError(f"params.yaml: profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    try:
        specs = load_specs(Path(repo) / "reproductions")
    except SpecError as err:
        raise PlanError(str(err)) from None
    specs = {k: v for k, v in specs.items() if k in (how.get("reproductions") or specs)}
    expected = select([r for s in specs.values() for r in s.runs(profile, how.get("seeds"))], how.get("only"))
    if how.get("runs", "all") == "recorded":  # a plan from before the mode existed planned every run
        expected = [r for r in expected if record_file(repo, r).exists()]
    want = {r.key: " ".join(r.overrides) for r in expected}
    have = {k: v.get("args") for k, v in (params.get("runs") or {}).items()}
    if want != have:
        stale = sorted(set(want) ^ set(have) | {k for k in set(want) & set(have) if want[k] != have[k]})
        raise PlanError(
            f"params.yaml is stale for profile={profile} ({len(stale)} run(s) differ, e.g. {stale[0]}): "
            f"run `{plan_command(params, repo)}`, then `dvc repro`"
        )


def missing_records(repo: Path, runs: dict[str, dict[str, str]]) -> list[str]:
    """Stage keys of the plan items ``runs`` whose record does not exist yet."""
    return [k for k, v in runs.items() if not (Path(repo) / v["out"] / "metrics.json").exists()]


def unlocked_runs(repo: Path, runs: dict[str, dict[str, str]]) -> list[str]:
    """Stage keys of the plan items ``runs`` that have a record but no ``train@<key>`` entry in dvc.lock
    (``dvc repro`` would run them again; ``dvc commit -f train@<key>`` records them)."""
    try:
        locked = (yaml.safe_load((Path(repo) / "dvc.lock").read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        locked = {}
    done = set(runs) - set(missing_records(repo, runs))
    return sorted(k for k in done if f"train@{k}" not in locked)


def estimate_run_s(
    repo: Path, profile: str, reproductions: set[str] | None = None
) -> tuple[float | None, int, str, float | None]:
    """(mean wall-clock seconds of one run, number of records it is from, where they were measured, their mean
    ``train.epochs`` or None where a record does not say).

    From the records of ``profile`` under results/runs measured on this machine's CPU model, else from
    all records of ``profile`` (said so); None when there is none. Only the records of ``reproductions``
    count where they have any (a SparCL run costs differently from a SpFDE one). Methods differ in cost
    (SpFDE runs are cheaper than dense ones), so this is an estimate of the order of magnitude, not a schedule.
    """
    from spfde_core.provenance import cpu_model

    paths = sorted((Path(repo) / "results" / "runs").glob("*/*/*/metrics.json"))
    if reproductions and any(p.parts[-4] in reproductions for p in paths):
        paths = [p for p in paths if p.parts[-4] in reproductions]
    times: list[tuple[float, str, float | None]] = []
    for path in paths:
        try:
            record = json.loads(path.read_text())  # a broken record is simply not used
            if record["run"]["profile"] == profile:
                epochs = (record.get("config") or {}).get("train", {}).get("epochs")
                device = record["provenance"]["device"]["name"]
                times.append((float(record["timing"]["wall_clock_s"]), device, float(epochs) if epochs else None))
        except Exception:  # noqa: BLE001, S112 - an estimate skips what it cannot read
            continue
    here = cpu_model()
    local = [t for t in times if t[1] == here]
    used, where = (local, f"on this machine's CPU ({here})") if local else (times, "")
    if not used:
        return None, 0, "", None
    if not local:
        where = f"on {', '.join(sorted({d for _, d, _ in times}))}, not this machine"
    epochs = [e for _, _, e in used]
    mean_epochs = sum(epochs) / len(epochs) if None not in epochs else None  # type: ignore[arg-type]
    return sum(t for t, _, _ in used) / len(used), len(used), where, mean_epochs


def planned_epochs(args: str) -> int | None:
    """The ``train.epochs=N`` a plan item's arguments set (the last one wins, as in Hydra), else None."""
    found = None
    for arg in args.split():
        if arg.startswith("train.epochs="):
            try:
                found = int(arg.split("=", 1)[1])
            except ValueError:
                found = None
    return found


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def pending_summary(repo: Path, keys: list[str], profile: str, starter: str) -> str:
    """What ``starter`` (e.g. ``dvc repro``) is about to train: how many runs, the estimated time, the
    way out (rebuild only the leaderboard; plan only the recorded runs)."""
    try:
        args = {k: item.get("args", "") for k, item in (read_params(repo).get("runs") or {}).items()}
    except Exception:  # noqa: BLE001 - no readable plan: every run counts as a typical one
        args = {}
    prefix = "run.reproduction="
    reproductions = {a[len(prefix) :] for k in keys for a in args.get(k, "").split() if a.startswith(prefix)}
    mean_s, n, where, mean_epochs = estimate_run_s(repo, profile, reproductions)
    if mean_s is None:
        eta = f"no estimate of the time: no {profile}-profile record yet"
    else:
        epochs = [planned_epochs(args.get(k, "")) for k in keys]
        scaled = mean_epochs is not None and any(e is not None and e != mean_epochs for e in epochs)
        # a 60-epoch run takes about twice a 30-epoch one: scale by the planned epochs where known
        total = sum(mean_s * (e / mean_epochs if scaled and e is not None else 1.0) for e in epochs)
        scale_note = f", scaled by each run's train.epochs against their {mean_epochs:.0f}" if scaled else ""
        eta = (
            f"about {_duration(total)} one at a time (estimate: mean wall-clock "
            f"{_duration(mean_s)} per run of {n} {profile}-profile record(s) {where}{scale_note})"
        )
    return (
        f"{starter} is about to train {len(keys)} planned run(s) without a record (e.g. {keys[0]}): {eta}.\n"
        "  The leaderboard alone: `dvc repro --single-item leaderboard` or `spfde board`; only the runs with "
        f"records in the plan: `spfde board plan --profile {profile}`."
    )
