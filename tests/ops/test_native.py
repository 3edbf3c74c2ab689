"""The native kernel builds: one library per kernel and ISA target, cached by content, dispatched at load."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from spfde_core import hardware
from spfde_core.cli import main
from spfde_core.ops import native


def test_library_path_is_keyed_by_kernel_target_sources_and_flags(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    first = native.library_path("fused_sgd", "avx2")
    assert first.parent.parent == tmp_path and first.name == "libspfde_fused_sgd_avx2.so"
    assert native.library_path("fused_sgd", "generic") != first
    monkeypatch.setattr(native, "COMMON_FLAGS", (*native.COMMON_FLAGS, "-DSPFDE_TEST_FLAG"))
    assert native.library_path("fused_sgd", "avx2") != first  # other flags: another build, never a stale one


def test_missing_compiler_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(native.NativeUnavailable, match="no C\\+\\+ compiler: 'no-such-compiler-xyz'"):
        native.build("fused_sgd", "generic")
    assert not list(tmp_path.rglob("*.so"))  # nothing half-written


def test_a_kernel_without_a_runnable_target_is_skipped_while_the_others_load(monkeypatch) -> None:
    """An AVX2-class process (as on an AMD EPYC) loads both kernels' AVX2 builds; a generic cap skips
    the sparse kernels (x86 intrinsics only) with the reason and leaves the fused update's generic build."""
    monkeypatch.setenv("SPFDE_NATIVE_ISA", "avx2")
    if "avx2" not in hardware.cpu_flags():
        pytest.skip("this CPU has no AVX2")
    assert native.loaded_target("fused_sgd") == "avx2"
    assert native.loaded_target("spconv") == "avx2"
    monkeypatch.setenv("SPFDE_NATIVE_ISA", "generic")
    reason = native.unavailable_reason("spconv")
    assert reason is not None and "needs avx512" in reason and "or avx2" in reason and "SPFDE_NATIVE_ISA" in reason
    assert native.loaded_target("fused_sgd") == "generic"
    status = native.status()
    assert status["fused_sgd"]["target"] == "generic" and "unavailable" in status["spconv"]


def test_the_isa_follows_pytorchs_capability(monkeypatch) -> None:
    """ATEN_CPU_CAPABILITY=avx2 (read by PyTorch at startup, so in a child process) caps our kernels too."""
    if "avx2" not in hardware.cpu_flags():
        pytest.skip("this CPU has no AVX2")
    code = "from spfde_core.ops import native; print(native.loaded_target('fused_sgd'), native.loaded_target('spconv'))"
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run(["python", "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["avx2", "avx2"]


def test_unknown_forced_isa_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("SPFDE_NATIVE_ISA", "sse9")
    with pytest.raises(native.NativeUnavailable, match="SPFDE_NATIVE_ISA: expected one of avx512, avx2, generic"):
        native.load("fused_sgd")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="no aarch64 cross compiler")
def test_generic_fused_update_compiles_for_arm(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "aarch64-linux-gnu-g++")
    assert native.build("fused_sgd", "generic").exists()


@pytest.mark.skipif(
    native.unavailable_reason("fused_sgd") is not None, reason=str(native.unavailable_reason("fused_sgd"))
)
def test_ops_build_and_status(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SPFDE_OPS_CACHE", str(tmp_path))
    assert main(["ops", "build"]) == 0
    target = native.select_target("fused_sgd").name
    built = native.library_path("fused_sgd", target)
    assert built.exists() and built.parent.parent == tmp_path
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert f"native kernel fused_sgd: {target} build, {built}" in out and "fused_cpu" in out
