"""`spfde board`: the leaderboard, the DVC plan and the parallel runner (wired into spfde_core/cli.py).

    spfde board [--skip-invalid] [--no-plots]        results/LEADERBOARD.md, leaderboard.csv, plots/
        [--allow-empty]                               (never an empty one over a non-empty one unless told)
    spfde board plan --profile cpu [--only GLOB]     params.yaml: the runs with a record (`dvc repro` trains none)
        [--all]                                       also the runs without one (`dvc repro` trains them)
    spfde board plan --check                         fail if params.yaml is stale
    spfde board run --jobs 4 [--only GLOB]           train planned runs in parallel, each worker pinned
        [--cpus-per-job K] [--gpus auto|none|0,1]     to its cores and one GPU
    (then `dvc commit -f prepare train && dvc repro` rebuilds the leaderboard)

Errors (spec, paper.csv, plan, record) are ConfigError/RecordError: `spfde` prints them, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_board(args: argparse.Namespace) -> None:
    from spfde_core.board import build_board

    result = build_board(
        Path(args.repo),
        runs_root=args.runs,
        out_dir=args.out,
        skip_invalid=args.skip_invalid,
        plots=not args.no_plots,
        allow_empty=args.allow_empty,
    )
    for path, reason in result.skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    print(f"{result.markdown} ({result.cells} cells, {result.records} records, {len(result.skipped)} skipped)")


def cmd_plan(args: argparse.Namespace) -> None:
    from spfde_core.board.pipeline import (
        check_plan,
        missing_records,
        pending_summary,
        read_params,
        unlocked_runs,
        write_plan,
    )

    repo = Path(args.repo)
    if args.check:  # also the first command of every prepare stage: the last word before `dvc repro` trains
        check_plan(repo)
        params = read_params(repo)
        runs = params.get("runs") or {}
        print(f"params.yaml is up to date ({len(runs)} planned runs)")
        missing = missing_records(repo, runs)
        if missing:
            print(pending_summary(repo, missing, params["profile"], "dvc repro"), flush=True)
        return
    profile = args.profile or read_params(repo).get("profile") or "cpu"
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    path = write_plan(
        repo, profile, only=args.only, seeds=seeds, reproductions=args.reproduction, include_missing=args.all
    )
    runs = read_params(repo)["runs"]
    missing = missing_records(repo, runs)
    print(f"{path}: {len(runs)} runs ({len(runs) - len(missing)} with a record)")
    if missing:
        print(pending_summary(repo, missing, profile, "`dvc repro` of this plan"))
    unlocked = unlocked_runs(repo, runs)
    if unlocked:
        datasets = " ".join(f"prepare@{k}" for k in read_params(repo)["datasets"])
        stages = " ".join(f"train@{k}" for k in unlocked)
        print(f"{len(unlocked)} recorded run(s) not yet in dvc.lock; record them: `dvc commit -f {datasets} {stages}`")


def cmd_run(args: argparse.Namespace) -> None:
    from spfde_core.board.pipeline import PlanError
    from spfde_core.board.runner import run_planned

    failed = run_planned(
        Path(args.repo),
        jobs=args.jobs,
        only=args.only,
        dry_run=args.dry_run,
        cpus_per_job=args.cpus_per_job,
        gpus=args.gpus,
    )
    if failed:
        raise PlanError(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs under checkpoints/logs/)")


def add_board_parser(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("board", help="leaderboard from run records; `board plan` / `board run` for pipelines")
    board.add_argument("--repo", default=".", help="repository root (default: .)")
    board.add_argument("--runs", help="root of run records (default: <repo>/results/runs)")
    board.add_argument("--out", help="output folder (default: <repo>/results)")
    board.add_argument("--skip-invalid", action="store_true", help="skip malformed records and list them")
    board.add_argument("--no-plots", action="store_true", help="write the tables only")
    board.add_argument(
        "--allow-empty", action="store_true", help="replace a non-empty leaderboard even when no record is readable"
    )
    board.set_defaults(func=cmd_board)
    actions = board.add_subparsers(dest="board_command")
    plan = actions.add_parser("plan", help="write params.yaml: the runs `dvc repro` regenerates for a profile")
    plan.add_argument("--profile", choices=["smoke", "cpu", "paper"], help="default: params.yaml's profile, else cpu")
    plan.add_argument("--reproduction", action="append", help="only this reproduction (repeatable)")
    plan.add_argument("--only", action="append", help="only runs whose key or <reproduction>/<row> matches (glob)")
    plan.add_argument("--seeds", help="comma-separated seeds instead of each reproduction's, e.g. 0,1")
    plan.add_argument(
        "--all",
        action="store_true",
        help="also the runs without a record, which `dvc repro` then trains (default: only runs with a record)",
    )
    plan.add_argument("--check", action="store_true", help="fail if params.yaml is stale; write nothing")
    plan.set_defaults(func=cmd_plan)
    run = actions.add_parser("run", help="train the planned runs that have no record yet, in parallel")
    run.add_argument("--jobs", "-j", type=int, default=1, help="trainings at a time (default 1)")
    run.add_argument("--only", action="append", help="only stage keys matching this glob (repeatable)")
    run.add_argument("--cpus-per-job", type=int, help="cores per worker (default: all cores split evenly)")
    run.add_argument(
        "--gpus", help="auto (default: every visible GPU, one per worker), none (hide GPUs) or indices like 0,1"
    )
    run.add_argument("--dry-run", action="store_true", help="print the commands and shares, train nothing")
    run.set_defaults(func=cmd_run)
