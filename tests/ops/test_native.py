"""The native kernel build: cached by content, clear errors, `spfde ops`."""

from __future__ import annotations

import pytest

from spfde_core.cli import main
from spfde_core.ops import native


def test_library_path_is_keyed_by_sources_and_flags(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    first = native.library_path()
    assert first.parent.parent == tmp_path
    monkeypatch.setattr(native, "FLAGS", [*native.FLAGS, "-DSPFDE_TEST_FLAG"])
    assert native.library_path() != first  # other flags: another build, never a stale one


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(native.NativeUnavailable, match="no C\\+\\+ compiler: 'no-such-compiler-xyz'"):
        native.build()
    assert not list(tmp_path.rglob("*.so"))  # nothing half-written


@pytest.mark.skipif(native.unavailable_reason() is not None, reason=str(native.unavailable_reason()))
def test_ops_build_and_status(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    assert main(["ops", "build"]) == 0
    built = native.library_path()
    assert built.exists() and built.parent.parent == tmp_path
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "native kernels: available" in out and str(built) in out and "fused_cpu" in out
