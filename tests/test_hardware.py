"""Hardware-aware defaults (spfde_core/hardware.py, docs/hardware.md): train.precision and
train.channels_last 'auto' resolve by the CPU's ISA class and the model's widths; explicit settings win;
the record says what ran and why; the config hash does not depend on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from spfde_core import hardware
from spfde_core.cli import load_config
from spfde_core.config import config_hash
from spfde_core.models import build_model

CPU = torch.device("cpu")


def _resolve_in_child(env: dict[str, str]) -> dict:
    """cpu_isa and the auto precision in a fresh process (PyTorch reads ATEN_CPU_CAPABILITY at startup)."""
    code = (
        "import json, torch; from spfde_core import hardware; "
        "print(json.dumps({'isa': hardware.cpu_isa().as_dict(), "
        "'precision': hardware.resolve_precision('auto', torch.device('cpu')).value}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_auto_precision_is_bf16_only_where_native() -> None:
    isa = hardware.cpu_isa()
    expected = "bf16" if isa.native_bf16 else "fp32"
    assert isa.native_bf16 == (
        ("amx_bf16" in isa.flags or "avx512_bf16" in isa.flags) and isa.isa_class in ("amx", "avx512")
    )
    assert hardware.resolve_precision("auto", CPU).value == expected
    assert hardware.resolve_precision("fp32", CPU).value == "fp32"  # explicit settings win
    assert hardware.resolve_precision("bf16", CPU).reason == "set explicitly"


def test_avx2_emulation_resolves_as_an_avx2_cpu() -> None:
    """What an AMD EPYC (AVX2, no AVX-512, no AMX) gets: fp32, and the avx2 class."""
    if "avx2" not in hardware.cpu_flags():
        pytest.skip("this CPU has no AVX2")
    child = _resolve_in_child({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert child["isa"]["isa_class"] == "avx2" and child["isa"]["capability"] == "AVX2"
    assert child["isa"]["native_bf16"] is False and child["precision"] == "fp32"


def test_a_onednn_cap_below_bf16_also_means_fp32() -> None:
    if "avx512_bf16" not in hardware.cpu_flags():
        pytest.skip("no native bf16 on this CPU to cap")
    child = _resolve_in_child({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
    assert child["isa"]["native_bf16"] is False and child["precision"] == "fp32"


def test_channels_last_auto_follows_the_narrowest_convolution() -> None:
    with torch.device("meta"):
        full, quarter = build_model("resnet20", 10), build_model("resnet20", 10, width=0.25)
    assert hardware.narrowest_conv_width(full) == 16 and hardware.narrowest_conv_width(quarter) == 4
    assert hardware.resolve_channels_last("auto", full).value is True  # no measurement given: CUDA's rule
    never = lambda: pytest.fail("measured although the rule already decides")  # noqa: E731
    narrow = hardware.resolve_channels_last("auto", quarter, never)
    assert narrow.value is False and "4 < 16" in narrow.reason
    assert hardware.resolve_channels_last(True, quarter, never).value is True  # explicit wins
    assert hardware.resolve_channels_last(False, full, never).value is False
    assert hardware.resolve_channels_last("auto", nn.Linear(3, 3), never).value is False
    assert hardware.resolve_channels_last("auto", full, lambda: (False, "NCHW measured faster")).value is False


def test_layout_probe_keeps_the_faster_layout_measures_once_and_survives_a_damaged_cache(
    tmp_path, monkeypatch, caplog
) -> None:
    from spfde_core import layout_probe

    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path))
    calls = []

    def probe(nchw: float, cl: float):
        return lambda: calls.append(1) or {"nchw": nchw, "channels_last": cl}

    assert layout_probe.cached_choice("model A", probe(2.0, 1.0))[0] is True
    assert layout_probe.cached_choice("model B", probe(1.0, 2.0))[0] is False
    again, reason = layout_probe.cached_choice("model A", probe(1.0, 2.0))  # cached: not measured again
    assert again is True and "cached" in reason and len(calls) == 2
    layout_probe.cache_path().write_text("{not json")
    assert layout_probe.cached_choice("model A", probe(1.0, 2.0))[0] is False
    assert len(calls) == 3 and "unreadable layout cache" in caplog.text
    assert json.loads(layout_probe.cache_path().read_text())["model A"]["nchw"] == 1.0


def test_layout_probe_counts_each_layout_with_its_faster_variant(tmp_path, monkeypatch) -> None:
    """A sparse run's layout: the kernels faster in NCHW beat a faster dense channels_last (issue 19)."""
    from spfde_core import layout_probe

    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path))
    kernels_win = {"nchw": 2.0, "channels_last": 1.0, "nchw+kernels": 0.5, "channels_last+kernels": 1.5}
    channels_last, reason = layout_probe.cached_choice("sparse A", lambda: kernels_win)
    assert channels_last is False
    assert "1000 ms in channels_last, 500 ms in NCHW" in reason and "sparse kernels 1500 / 500 ms" in reason
    kernels_lose = {"nchw": 2.0, "channels_last": 1.0, "nchw+kernels": 3.0, "channels_last+kernels": 4.0}
    assert layout_probe.cached_choice("sparse B", lambda: kernels_lose)[0] is True
    on, reason = layout_probe.cached_choice("sparse C", lambda: kernels_lose, kernels_only=True)
    assert on is False and "3000 ms in NCHW" in reason  # train.sparse_kernels=on: the kernels run regardless


def test_layout_probe_times_both_layouts_without_touching_the_random_stream() -> None:
    from spfde_core import layout_probe

    torch.manual_seed(123)
    before = torch.get_rng_state()
    times = layout_probe.measure(lambda: build_model("resnet20", 10), 32, 10, 4, bf16=False)
    assert set(times) == {"nchw", "channels_last"} and all(t > 0 for t in times.values())
    assert torch.equal(torch.get_rng_state(), before)


def test_cpu_auto_layout_is_measured_and_recorded(tmp_path, monkeypatch) -> None:
    from spfde_core import layout_probe
    from spfde_core.train.build import resolve_hardware

    monkeypatch.setenv("SPFDE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(layout_probe, "measure", lambda *a: {"nchw": 0.5, "channels_last": 0.25})
    cfg = load_config(["model=resnet20", "data=synthetic", "train.precision=fp32"])
    block = resolve_hardware(cfg, CPU)
    assert cfg.train.channels_last is True and block["channels_last"]["value"] is True
    assert "250 ms in channels_last, 500 ms in NCHW" in block["channels_last"]["reason"]
    (key,) = json.loads(layout_probe.cache_path().read_text())
    assert "resnet20" in key and "fp32" in key and hardware.cpu_isa().isa_class in key


def test_precision_and_layout_do_not_change_the_config_hash() -> None:
    """The same experiment on an AMX and an AVX2 machine is one row (docs/hardware.md)."""
    base = config_hash(load_config(["profile=smoke"]))
    for overrides in (["train.precision=fp32"], ["train.precision=bf16", "train.channels_last=false"]):
        assert config_hash(load_config(["profile=smoke", *overrides])) == base


@pytest.mark.smoke
def test_the_record_says_what_ran_and_why(smoke_overrides, tmp_path) -> None:
    from spfde_core.train.run import run_training

    cfg = load_config([*smoke_overrides, "train.epochs=1"])
    record = run_training(cfg)
    assert cfg.train.precision == "auto"  # the caller's config is left as given
    block = record["hardware"]
    assert block["precision"]["requested"] == "auto"
    assert block["precision"]["value"] == record["config"]["train"]["precision"]
    assert block["channels_last"] == {
        "requested": "auto",
        "value": False,
        "reason": "a convolution has 4 < 16 input channels (unsafe, slower in channels_last)",
    }
    isa = record["provenance"]["device"]["isa"]
    assert isa["isa_class"] in ("amx", "avx512", "avx2", "generic") and isa["capability"]
