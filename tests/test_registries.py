"""Every registered method, on all three axes, follows the one-name-in-four-places rule and is listed.

The name is the registry key, the Hydra option (``spfde_core/conf/<axis>/<key>.yaml``), the file
(``spfde_core/<axis>/<key>.py``) and the test file (``tests/<axis>/test_<key>.py``). Variants of one
method share its file and test: ``<file>_<variant>`` (``mest_em`` / ``mest_ems`` in ``sparsity/mest.py``).
``none`` / ``dense`` live in the axis's ``__init__.py``. ``docs/methods.md`` is the one table of every
method; ``SPFDE_WRITE_DOCS=1 pytest tests/test_registries.py`` regenerates it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spfde_core.cli import main
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sparsity import SPARSITY_METHODS

ROOT = Path(__file__).resolve().parents[1]
AXES = {"sparsity": SPARSITY_METHODS, "freezing": FREEZING_METHODS, "sieving": SIEVING_METHODS}
TABLE = ROOT / "docs" / "methods.md"


def builtin(registry) -> list[str]:  # noqa: ANN001
    """Methods of this package (plugins from other installed packages bring their own configs and tests)."""
    return [name for name in registry.names() if registry.get(name).__module__.startswith("spfde_core.")]


def file_stem(axis: str, name: str) -> str:
    """The stem of the file defining ``axis=name`` (``__init__`` for the axis's no-op method)."""
    return AXES[axis].get(name).__module__.removeprefix(f"spfde_core.{axis}.").removeprefix("spfde_core.")


def all_methods() -> list[tuple[str, str]]:
    return [(axis, name) for axis in AXES for name in builtin(AXES[axis])]


@pytest.mark.parametrize(("axis", "name"), all_methods())
def test_file_name_is_the_key_and_config_test_and_description_exist(axis: str, name: str) -> None:
    stem = file_stem(axis, name)
    if stem == axis:  # the no-op method (none / dense), defined in spfde_core/<axis>/__init__.py
        assert name in ("none", "dense")
    else:
        assert name == stem or name.startswith(f"{stem}_"), f"{axis}={name} lives in {axis}/{stem}.py"
        assert (ROOT / "tests" / axis / f"test_{stem}.py").exists(), f"{axis}={name}: no tests/{axis}/test_{stem}.py"
    assert (ROOT / "spfde_core" / "conf" / axis / f"{name}.yaml").exists(), f"{axis}={name}: no config file"
    doc = (AXES[axis].get(name).__doc__ or "").strip()
    assert doc, f"{axis}={name}: its builder needs a one-line docstring (shown by `spfde list methods`)"
    assert f"| `{name}` |" in TABLE.read_text(), f"{axis}={name} is not in docs/methods.md"


@pytest.mark.parametrize("axis", sorted(AXES))
def test_every_config_option_is_a_registered_method(axis: str) -> None:
    options = {p.stem for p in (ROOT / "spfde_core" / "conf" / axis).glob("*.yaml")}
    assert options == set(builtin(AXES[axis])), "every config option must be a registered method and vice versa"


def methods_table() -> str:
    lines = [
        "# Every method, on every axis",
        "",
        "Generated from the registries by `tests/test_registries.py` (`SPFDE_WRITE_DOCS=1 pytest "
        "tests/test_registries.py` rewrites it; the test fails when it is stale). Choose one per axis: "
        "`spfde train sparsity=<key> freezing=<key> sieving=<key>`; `spfde list methods` prints the same.",
        "",
        "| axis | key | file | config | test | what |",
        "|---|---|---|---|---|---|",
    ]
    for axis, name in all_methods():
        stem = file_stem(axis, name)
        path = f"spfde_core/{axis}/__init__.py" if stem == axis else f"spfde_core/{axis}/{stem}.py"
        test = "-" if stem == axis else f"tests/{axis}/test_{stem}.py"
        doc = (AXES[axis].get(name).__doc__ or "").strip().splitlines()[0].replace("|", "\\|")
        lines.append(f"| {axis} | `{name}` | `{path}` | `spfde_core/conf/{axis}/{name}.yaml` | {test} | {doc} |")
    return "\n".join(lines) + "\n"


def test_docs_methods_table_is_current() -> None:
    if os.environ.get("SPFDE_WRITE_DOCS") == "1":
        TABLE.write_text(methods_table())
    assert TABLE.read_text() == methods_table(), (
        "docs/methods.md is stale: SPFDE_WRITE_DOCS=1 pytest tests/test_registries.py"
    )


def test_list_methods_prints_every_method_with_its_description(capsys) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for axis, registry in AXES.items():
        assert f"{axis} methods" in out
        for name in registry.names():
            described = [line for line in out.splitlines() if line.split()[:1] == [name] and len(line.split()) > 3]
            assert described, f"{axis}={name} is not listed with a description"
