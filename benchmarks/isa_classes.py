"""Run a benchmark natively and under AVX2 emulation; its JSON keeps one entry per ISA class (issue 12).

PyTorch reads ``ATEN_CPU_CAPABILITY`` and oneDNN reads ``ONEDNN_MAX_CPU_ISA`` once, at startup, so the
AVX2 measurement runs in a child process of the same script (``--isa native`` there) with both set;
our own kernels follow (spfde_core.ops.native loads their AVX2 builds). Entries of other classes that
the output file already holds (measured on another machine) are kept, so one JSON collects an AMX
machine's and an AVX2 machine's numbers side by side, each with its own environment block.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spfde_core import atomic, hardware

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def add_isa_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--isa",
        choices=("both", "native", "avx2"),
        default="both",
        help="native: this CPU as it is; avx2: emulate an AVX2-only CPU (child process); both (default)",
    )


def run_classes(
    args: argparse.Namespace, script: str, measure: Callable[[], dict[str, Any]], out: Path, child_argv: list[str]
) -> dict:
    """Measure per ``args.isa``, merge into ``out``'s ``by_isa_class`` and write it; returns the merged dict.

    ``child_argv``: the script's options for the emulated run (without --isa/--out).
    """
    fresh: dict[str, Any] = {}
    if args.isa in ("both", "native"):
        before = os.getloadavg()  # other load on the machine: how far to trust the numbers
        entry = measure()
        entry["load_average_1_5_15_min"] = {"before": before, "after": os.getloadavg()}
        fresh[hardware.cpu_isa().isa_class] = entry
    if args.isa in ("both", "avx2") and not (args.isa == "both" and "avx2" in fresh):
        fresh.update(_measure_in_child(script, child_argv))
    merged = json.loads(out.read_text()) if out.exists() else {}
    classes = merged.get("by_isa_class", {}) if isinstance(merged.get("by_isa_class"), dict) else {}
    classes.update(fresh)
    result = {"by_isa_class": dict(sorted(classes.items()))}
    atomic.write_json(out, result)
    return result


def _measure_in_child(script: str, argv: list[str]) -> dict[str, Any]:
    """The same benchmark in a child process under AVX2_ENV; its one-class result."""
    with tempfile.TemporaryDirectory() as tmp:
        child_out = Path(tmp) / "avx2.json"
        cmd = [sys.executable, script, *argv, "--isa", "native", "--out", str(child_out)]
        subprocess.run(cmd, env={**os.environ, **AVX2_ENV}, check=True)
        return json.loads(child_out.read_text())["by_isa_class"]
