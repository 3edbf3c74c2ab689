"""Every registered method follows the one-name-in-four-places rule and describes itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.cli import main
from spfde_core.freezing import FREEZING_METHODS
from spfde_core.sieving import SIEVING_METHODS
from spfde_core.sparsity import SPARSITY_METHODS

ROOT = Path(__file__).resolve().parents[1]
AXES = {"sparsity": SPARSITY_METHODS, "freezing": FREEZING_METHODS, "sieving": SIEVING_METHODS}


def builtin(registry) -> list[str]:  # noqa: ANN001
    """Methods of this package (plugins from other installed packages bring their own configs and tests)."""
    return [name for name in registry.names() if registry.get(name).__module__.startswith("spfde_core.")]


@pytest.mark.parametrize("axis", sorted(AXES))
def test_each_method_has_a_config_file_a_description_and_a_test(axis: str) -> None:
    registry = AXES[axis]
    for name in builtin(registry):
        assert (ROOT / "spfde_core" / "conf" / axis / f"{name}.yaml").exists(), f"{axis}={name}: no config file"
        doc = (registry.get(name).__doc__ or "").strip()
        assert doc, f"{axis}={name}: its builder needs a one-line docstring (shown by `spfde list methods`)"
    options = {p.stem for p in (ROOT / "spfde_core" / "conf" / axis).glob("*.yaml")}
    assert options == set(builtin(registry)), "every config option must be a registered method and vice versa"


def test_every_sparse_method_has_its_own_test_file() -> None:
    for name in builtin(SPARSITY_METHODS):
        if name in ("dense",):
            continue
        stem = {"static_random": "static", "static_erk": "static", "mest_em": "mest", "mest_ems": "mest"}.get(
            name, name
        )
        assert (ROOT / "tests" / "sparsity" / f"test_{stem}.py").exists(), f"sparsity={name}: no test file"


def test_list_methods_prints_every_method_with_its_description(capsys) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for axis, registry in AXES.items():
        assert f"{axis} methods" in out
        for name in registry.names():
            described = [line for line in out.splitlines() if line.split()[:1] == [name] and len(line.split()) > 3]
            assert described, f"{axis}={name} is not listed with a description"
