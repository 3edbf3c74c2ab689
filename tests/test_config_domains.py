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
            "sieving.start_epoch: expected null or an epoch in [0, train.epochs) = [0, 2), got 2",
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
