"""The `spfde` command: prepare data, train, show a resolved config, list what exists.

Every knob is a Hydra override (``key=value``, ``group=option``); the only flag is ``--force``.

    spfde data prepare cifar10 [data.source=imagefolder data.path=../shared/data/cifar10-jpeg.tar.gz]
    spfde train profile=cpu run.seed=1 [--force]
    spfde show profile=cpu
    spfde cost model=resnet32_w2 sparsity=mest_ems
    spfde list
"""

from __future__ import annotations

import argparse
import logging
import sys

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger("spfde_core")


class UsageError(Exception):
    """A command-line or configuration mistake: printed as one line, exit status 2."""


def load_config(overrides: list[str]) -> DictConfig:
    """Compose the config tree with Hydra overrides; config mistakes become UsageError."""
    # Importing these registers the config schemas (root and per method) in Hydra's ConfigStore.
    import spfde_core.config  # noqa: F401
    import spfde_core.freezing  # noqa: F401
    import spfde_core.sieving  # noqa: F401
    import spfde_core.sparsity  # noqa: F401
    from spfde_core.plugins import PluginError, load_plugins

    try:
        load_plugins()  # methods of other packages (entry points, spfde_core/plugins.py) before composing
    except PluginError as err:
        raise UsageError(str(err)) from None

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"expected overrides of the form key=value or group=option, got: {' '.join(bad)}")
    try:
        with initialize_config_module(config_module="spfde_core.conf", version_base="1.3"):
            appends = [o for o in overrides if o.startswith("+")]
            if appends:
                plain = compose(config_name="config", overrides=[o for o in overrides if not o.startswith("+")])
                _refuse_unknown_appends(plain, appends)
            return compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(f"invalid config: {err}") from None


def _existing_or_open(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` exists, or lies inside a free-form dict field (``sparsity.layer_map``) that takes new keys."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:i]), default=KeyError)
        if node is not KeyError:
            return i == len(parts) or (isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict)
    return False


def _refuse_unknown_appends(cfg: DictConfig, appends: list[str]) -> None:
    """`+key=value` adds a key the schema lacks, which no run reads (a typo trains the default): refuse it."""
    import difflib
    from importlib import resources

    from spfde_core.config import flatten_dotted

    keys = sorted(flatten_dotted(OmegaConf.to_container(cfg)))
    groups = sorted(p.name for p in resources.files("spfde_core.conf").iterdir() if p.is_dir() and p.name[0] != "_")
    for override in appends:
        key = override.lstrip("+").partition("=")[0]
        if key in groups or _existing_or_open(cfg, key):
            continue  # an existing key, a key in a free-form dict, `+group=option`: Hydra decides
        close = difflib.get_close_matches(key, [*keys, *groups], n=5, cutoff=0.6)
        hint = f"similar valid keys: {', '.join(close)}" if close else "`spfde show` lists every valid key"
        raise UsageError(
            f"{key}: no such config key, so `{override}` would add a value nothing reads; {hint} "
            "(set an existing key without '+', e.g. optim.lr=0.05)"
        )


def _validated(overrides: list[str]) -> DictConfig:
    from spfde_core.config import validate

    cfg = load_config(overrides)
    validate(cfg)
    return cfg


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Hydra's basic sweeper: ``run.seed=0,1 optim.lr=0.1,0.05`` -> every combination, in Hydra's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UsageError(f"invalid override: {err}") from None
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def cmd_train(args: argparse.Namespace) -> None:
    from spfde_core.config import config_hash
    from spfde_core.train.faults import clean_faults
    from spfde_core.train.run import RunExistsError, RunPaths, run_training

    overrides = [*args.overrides, *(["run.force=true"] if args.force else [])]
    if not args.multirun:
        cfg = _validated(overrides)
        # Ctrl-C / SIGTERM / a full disk: one line saying where the run resumes (exit 130 / 143 / 2), no traceback.
        with clean_faults(RunPaths.of(cfg, config_hash(cfg)).checkpoint, cfg.train.epochs):
            run_training(cfg)
        return
    # --multirun: every job composed and validated before any compute, then run one after another (Hydra's basic
    # launcher), each its own run with its own record; a job already recorded is skipped, so rerunning the same
    # command after an interruption finishes the sweep.
    jobs = [(job, _validated(job)) for job in sweep_jobs(overrides)]
    paths: dict[str, list[str]] = {}
    for job, cfg in jobs:
        record = str(RunPaths.of(cfg, config_hash(cfg)).record)
        if record in paths:
            raise UsageError(
                f"--multirun: jobs '{' '.join(paths[record])}' and '{' '.join(job)}' write the same record {record}; "
                "sweep a value that changes the run (or leave run.row unset so the config hash names the folder)"
            )
        paths[record] = job
    for index, (job, cfg) in enumerate(jobs):
        print(f"[multirun {index + 1}/{len(jobs)}] spfde train {' '.join(job)}", file=sys.stderr, flush=True)
        try:
            with clean_faults(RunPaths.of(cfg, config_hash(cfg)).checkpoint, cfg.train.epochs):
                run_training(cfg)
        except RunExistsError as err:
            print(f"[multirun {index + 1}/{len(jobs)}] skipped: {err}", file=sys.stderr, flush=True)


def cmd_show(args: argparse.Namespace) -> None:
    from spfde_core.config import config_hash, non_default_values
    from spfde_core.train.run import RunPaths

    cfg = _validated(args.overrides)
    chash = config_hash(cfg)
    print(OmegaConf.to_yaml(cfg), end="")
    print(f"# config hash: {chash}")
    print(f"# non-default: {non_default_values(cfg)}")
    print(f"# record:      {RunPaths.of(cfg, chash).record}")


def cmd_cost(args: argparse.Namespace) -> None:
    import json

    from spfde_core.cost import format_cost_table, predict_cost

    report = predict_cost(_validated(args.overrides))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_cost_table(report))


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from spfde_core.train.build import prepare

    cfg = _validated([f"data={args.dataset}", *args.overrides])
    path = prepare(cfg.data, force=args.force)
    print(path)


def cmd_list(args: argparse.Namespace) -> None:
    from spfde_core.data.catalog import DATASETS
    from spfde_core.freezing import FREEZING_METHODS
    from spfde_core.models import MODELS
    from spfde_core.plugins import load_plugins
    from spfde_core.sieving import SIEVING_METHODS
    from spfde_core.sparsity import SPARSITY_METHODS

    load_plugins()
    if args.what in ("all", "datasets"):
        print("datasets: " + ", ".join(sorted(DATASETS)))
    if args.what in ("all", "models"):
        print("models:")
        for name in MODELS.names():
            print(f"  {name:16s} {MODELS.get(name).source}")
    if args.what in ("all", "methods"):
        for axis, registry in (
            ("sparsity", SPARSITY_METHODS),
            ("freezing", FREEZING_METHODS),
            ("sieving", SIEVING_METHODS),
        ):
            print(f"{axis} methods ({axis}=<name>):")
            for name in registry.names():
                doc = (registry.get(name).__doc__ or "").strip().splitlines()
                print(f"  {name:18s} {doc[0] if doc else ''}")
    if args.what in ("all", "methods"):
        print("named entries (method=<name>, one choice on every axis):")
        for name, doc in named_entries():
            print(f"  {name:18s} {doc}")
    if args.what in ("all", "profiles"):
        print("profiles: smoke, cpu, paper")


def named_entries() -> list[tuple[str, str]]:
    """The options of the ``method`` config group with the first line of their header comment."""
    from importlib import resources

    entries = []
    for path in sorted(resources.files("spfde_core.conf").joinpath("method").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".yaml"):
            comments = [
                line[2:] for line in path.read_text().splitlines() if line.startswith("# ") and "@package" not in line
            ]
            entries.append((path.name[: -len(".yaml")], comments[0] if comments else ""))
    return entries


def cmd_ops(args: argparse.Namespace) -> None:
    """Build (``spfde ops build``) or report the native kernels: fused masked update, sparse kernels."""
    import torch

    from spfde_core import hardware
    from spfde_core.ops import native
    from spfde_core.ops.fused_update import select_impl

    if args.action == "build":  # every kernel for the best target this process can run
        built = 0
        for kernel in native.KERNELS:
            try:
                print(native.build(kernel, native.select_target(kernel).name, verbose=True))
                built += 1
            except native.NativeUnavailable as err:
                print(f"{kernel}: skipped: {err}")
        if not built:
            raise UsageError("no native kernel can be built here (see the reasons above)")
        return
    isa = hardware.cpu_isa()
    print(f"cpu: {isa.isa_class} (torch capability {isa.capability}, flags {' '.join(isa.flags) or 'none'})")
    for kernel, info in native.status().items():
        where = (
            f"{info['target']} build, {info['library']}" if "target" in info else f"unavailable: {info['unavailable']}"
        )
        print(f"native kernel {kernel}: {where}")
    impl, why = select_impl("auto", torch.device("cpu"))
    print(f"masked update on cpu (train.update_impl=auto): {impl}{'' if why is None else ' (' + why + ')'}")
    spconv = native.unavailable_reason("spconv")
    print(f"sparse kernels (train.sparse_kernels): {'CPU' if spconv is None else 'masked dense path only'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spfde", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one run (resumes a killed run; refuses to redo a finished one)")
    train.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=cpu run.seed=1")
    train.add_argument("--force", action="store_true", help="re-run a finished run, replacing its record")
    train.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="Hydra sweep (basic launcher): comma lists run one after another, e.g. run.seed=0,1,2",
    )
    train.set_defaults(func=cmd_train)
    show = sub.add_parser("show", help="print the resolved config, its hash and the record path")
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=cmd_show)
    cost = sub.add_parser("cost", help="predicted training FLOPs and memory of a config, per layer, without training")
    cost.add_argument("overrides", nargs="*", help="e.g. model=resnet32_w2 sparsity=mest_ems sparsity.target=0.9")
    cost.add_argument("--json", action="store_true", help="print the report as JSON")
    cost.set_defaults(func=cmd_cost)
    data = sub.add_parser("data", help="dataset commands").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", help="write a prepared dataset under data.prepared_dir")
    prep.add_argument("dataset", help="cifar10, cifar100, imagenet or synthetic")
    prep.add_argument("overrides", nargs="*", help="e.g. data.source=imagefolder data.path=DIR_OR_TAR_GZ")
    prep.add_argument("--force", action="store_true", help="replace a prepared dataset whose content differs")
    prep.set_defaults(func=cmd_data_prepare)
    lst = sub.add_parser("list", help="list datasets, models, methods and profiles")
    lst.add_argument("what", nargs="?", default="all", choices=["all", "datasets", "models", "methods", "profiles"])
    lst.set_defaults(func=cmd_list)
    ops = sub.add_parser("ops", help="native kernels: status, or `spfde ops build` to build them ahead of first use")
    ops.add_argument("action", nargs="?", default="status", choices=["status", "build"])
    ops.set_defaults(func=cmd_ops)
    from spfde_core.board.cli import add_board_parser  # `spfde board`: leaderboard, DVC plan, parallel runs

    add_board_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from spfde_core.config import ConfigError
    from spfde_core.data import DataSourceError, PreparedDataError
    from spfde_core.records import RecordError
    from spfde_core.train.checkpoint import CheckpointError
    from spfde_core.train.faults import RunInterrupted, RunIOError
    from spfde_core.train.run import RunExistsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    expected = (UsageError, ConfigError, DataSourceError, PreparedDataError, RecordError, CheckpointError)
    try:
        args.func(args)
    except (*expected, RunExistsError, RunIOError) as err:
        print(f"spfde: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        print(f"spfde: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
