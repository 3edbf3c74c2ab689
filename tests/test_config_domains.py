"""Config values that cannot be meant are refused before any compute, naming the field the user typed."""

from __future__ import annotations

import pytest

from spfde_core.cli import main


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sparsity=static_random", "sparsity.target=1.0"], "sparsity.target: expected a sparsity in [0, 1)"),
        (["sparsity=static_random", "sparsity.target=-0.1"], "sparsity.target: expected a sparsity in [0, 1)"),
        (["sparsity=mest_ems", "sparsity.target=1.5"], "sparsity.target: expected"),  # not the derived upper/lower
        (["sieving=spfde_circular", "sieving.update_every_epochs=0"], "sieving.update_every_epochs: expected null"),
        (["sparsity=mest_ems", "sparsity.update_every_epochs=0"], "sparsity.update_every_epochs: expected null"),
        (["freezing=spfde_progressive", "freezing.interval_epochs=0"], "freezing.interval_epochs: expected null"),
        (
            ["profile=smoke", "sieving=spfde_circular", "sieving.start_epoch=2"],
            "sieving.start_epoch: expected null or an epoch in [1, train.epochs) = [1, 2), got 2",
        ),
        (["+sparsty=mest_ems"], "sparsty: no such config key"),
        (["+optim.lrr=0.05"], "optim.lrr: no such config key"),
    ],
)
def test_out_of_domain_values_are_refused_cleanly(overrides, message, tmp_path, capsys) -> None:
    args = [*overrides, f"run.results_dir={tmp_path / 'runs'}", f"run.checkpoint_dir={tmp_path / 'ckpt'}"]
    assert main(["show", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "upper/lower" not in err
    assert main(["train", "profile=smoke", *args]) == 2  # refused before any compute: nothing written
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ckpt").exists()


def test_unknown_appends_list_similar_valid_keys(capsys) -> None:
    assert main(["show", "+optim.lrr=0.05"]) == 2
    assert "similar valid keys: optim.lr" in capsys.readouterr().err
    assert main(["show", "+sparsty=mest_ems"]) == 2
    assert "similar valid keys: sparsity" in capsys.readouterr().err


def test_in_domain_values_still_pass(capsys) -> None:
    ok = ["sparsity=static_random", "sparsity.target=0.0", "sieving=spfde_circular", "sieving.update_every_epochs=1"]
    assert main(["show", *ok, "profile=smoke", "sieving.start_epoch=1"]) == 0
    capsys.readouterr()


def test_appends_hydra_itself_suggests_still_work() -> None:
    from spfde_core.cli import load_config

    cfg = load_config(["sparsity=static_random", "+sparsity.layer_map={conv1: 0.5}", "+sparsity.layer_map.fc=0.1"])
    assert dict(cfg.sparsity.layer_map) == {"conv1": 0.5, "fc": 0.1}


# ---- the schema walk: every numeric field of every registered method declares a domain, and each value
# outside it is refused cleanly (issue 17, deliverable 1) --------------------------------------------------

NO_DOMAIN = {
    "layer_map": "per-layer sparsities keyed by layer name: checked against the model's layers when the masks are "
    "built (spfde_core/sparsity/distributions.py), not a number with an interval",
}


def _numeric(spec) -> bool:
    kind = str(spec.type)
    return "int" in kind or "float" in kind


def _outside(interval: str, integer: bool, epochs: int) -> list:
    """Values just outside ``interval``: negative, at an open bound, past the upper bound (or train.epochs)."""
    from spfde_core.config import _INTERVAL

    left, lo, hi, right = _INTERVAL.match(interval).groups()
    low = float(lo)
    bad = [low if left == "(" else low - 1]
    if low >= 0:
        bad.append(-1)
    if hi != "inf":
        high = epochs if hi == "train.epochs" else float(hi)
        bad.append(high if right == ")" else high + 1)
    return sorted({int(v) if integer else float(v) for v in bad})


def _method_schemas():
    """(axis, method name, config dataclass) of every registered method, as `spfde train <axis>=<name>` composes it."""
    from omegaconf import OmegaConf

    from spfde_core.cli import load_config
    from spfde_core.freezing import FREEZING_METHODS
    from spfde_core.sieving import SIEVING_METHODS
    from spfde_core.sparsity import SPARSITY_METHODS

    for axis, registry in (
        ("sparsity", SPARSITY_METHODS),
        ("freezing", FREEZING_METHODS),
        ("sieving", SIEVING_METHODS),
    ):
        for name in registry.names():
            cfg = load_config(["profile=smoke", f"{axis}={name}"])
            yield axis, name, OmegaConf.get_type(cfg, axis), cfg.train.epochs


def test_every_numeric_method_field_declares_a_domain_and_refuses_values_outside_it(tmp_path, capsys) -> None:
    from dataclasses import fields, is_dataclass

    paths = [f"run.results_dir={tmp_path / 'runs'}", f"run.checkpoint_dir={tmp_path / 'ckpt'}"]
    seen, undeclared, accepted, tried = set(), [], [], 0
    for axis, name, schema, epochs in _method_schemas():
        if not is_dataclass(schema):
            continue  # dense / none: no fields
        for spec in fields(schema):
            if not _numeric(spec) or spec.name in NO_DOMAIN:
                continue
            if "domain" not in spec.metadata:
                undeclared.append(f"{axis}={name}: {axis}.{spec.name}")
                continue
            key = (axis, spec.name, spec.metadata["domain"])
            if key in seen:  # a field shared by several methods (SparseConfig's) is walked once
                continue
            seen.add(key)
            integer = "float" not in str(spec.type)
            listed = str(spec.type).startswith("list")
            for i, bad in enumerate(_outside(spec.metadata["domain"], integer, epochs)):
                value = f"[{bad}]" if listed else str(bad)
                args = [f"{axis}={name}", f"{axis}.{spec.name}={value}", *paths]
                tried += 1
                rc = main(["show", "profile=smoke", *args])
                err = capsys.readouterr().err
                if rc != 2 or f"spfde: error: {axis}.{spec.name}: expected" not in err or "Traceback" in err:
                    accepted.append(f"spfde show {' '.join(args[:2])}: exit {rc}: {err.strip()[-200:]}")
                if i == 0:  # and `spfde train` refuses it before any compute (once per field: seconds each)
                    rc = main(["train", "profile=smoke", *args])
                    capsys.readouterr()
                    if rc != 2 or (tmp_path / "runs").exists() or (tmp_path / "ckpt").exists():
                        accepted.append(f"spfde train {' '.join(args[:2])}: exit {rc} or wrote files")
    assert not undeclared, f"numeric method fields without a domain (declare one, or add to NO_DOMAIN): {undeclared}"
    assert not accepted, "\n".join(accepted)
    assert len(seen) >= 40 and tried >= 80  # the walk really covered the schemas


def test_null_means_the_methods_default_and_passes() -> None:
    from spfde_core.cli import load_config

    cfg = load_config(["sparsity=mest_ems", "sparsity.update_every_epochs=null", "sieving=mest_forgetting"])
    assert cfg.sparsity.update_every_epochs is None and cfg.sieving.remove_epoch is None
