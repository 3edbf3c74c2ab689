"""The analysis command: ``python -m reproductions.spfde_neurips22.analysis <run_dir> [options]``.

Run from the repository root (``-m`` puts it on ``sys.path``). Mistakes (a missing run, no snapshots,
an unknown layer) print one line and exit with status 2, as ``spfde`` does.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .report import AnalysisError, IncompleteAnalysisError, analyze_run

USAGE_ERROR = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reproductions.spfde_neurips22.analysis",
        description="SpFDE Fig. 1 plots of a finished run: structural similarity, CKA vs final.",
    )
    p.add_argument("run_dir", help="the run's record folder, results/runs/<reproduction>/<row>/seed<k>")
    p.add_argument("--layers", help="CKA layers: names (layer1.0.conv1) or numbers (1,3,10); default: see README")
    p.add_argument("--probe-samples", type=int, default=512, help="CKA probe set: N test images spread evenly")
    p.add_argument("--out", help="output folder (default: <run_dir>/analysis)")
    p.add_argument("--checkpoint-dir", help="the run's checkpoint folder or root (default: its run.checkpoint_dir)")
    p.add_argument("--prepared-dir", help="root of prepared datasets (default: the run's data.prepared_dir)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Write the analyses of one run; print the files written. Returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    try:
        written = analyze_run(
            args.run_dir,
            args.checkpoint_dir,
            args.layers,
            args.probe_samples,
            args.out,
            prepared_dir=args.prepared_dir,
            device=args.device,
        )
    except IncompleteAnalysisError as err:  # part written: list it, then say what is missing
        print("\n".join(str(path) for path in err.written.values()))
        print(f"analysis: error: analysis incomplete: {err}", file=sys.stderr)
        return USAGE_ERROR
    except AnalysisError as err:
        print(f"analysis: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    print("\n".join(str(path) for path in written.values()))
    return 0
