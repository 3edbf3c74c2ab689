"""Config tree: every shipped option composes and validates; mistakes name their field; hashes are pinned."""

from __future__ import annotations

from pathlib import Path

import pytest

from spfde_core.cli import UsageError, load_config
from spfde_core.config import ConfigError, config_hash, non_default_values, validate

CONF = Path(__file__).resolve().parents[1] / "spfde_core" / "conf"


@pytest.mark.parametrize("group", ["data", "model", "optim", "profile", "sparsity", "freezing", "sieving", "method"])
def test_every_shipped_option_composes_and_validates(group: str) -> None:
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, f"no options in group {group}"
    for option in options:
        cfg = load_config([f"{group}={option}"])
        validate(cfg)


def test_profiles_set_their_budget() -> None:
    cpu = load_config(["profile=cpu"])
    assert (cpu.profile, cpu.model.name, cpu.data.name, cpu.train.epochs) == (
        "cpu",
        "resnet20",
        "cifar10",
        30,
    )
    smoke = load_config(["profile=smoke"])
    assert (smoke.data.name, smoke.model.width) == ("synthetic", 0.25)
    # A command-line group choice wins over the profile's.
    assert load_config(["profile=cpu", "model=resnet32_w2"]).model.name == "resnet32_w2"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("optim.lr=-0.1", "optim.lr"),
        ("train.epochs=0", "train.epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.precision=fp16", "train.precision"),
        ("optim.schedule=linear", "optim.schedule"),
        ("optim.momentum=1.5", "optim.momentum"),
        ("optim.warmup_epochs=500", "optim.warmup_epochs"),
        ("model.name=resnet99", "model.name"),
        ("sparsity.name=unknown", "sparsity.name"),
        ("data.source=ftp", "data.source"),
        ("run.row=a/b", "run.row"),
        ("train.update_impl=triton", "train.update_impl"),
    ],
)
def test_invalid_values_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(load_config([override]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=resnet99", "model/resnet99"),  # unknown group option: Hydra lists the options
        ("train.no_such_key=1", "no_such_key"),  # unknown key: rejected by the schema
        ("train.epochs=many", "train.epochs"),  # wrong type
    ],
)
def test_unknown_options_and_types_are_rejected(override: str, expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        load_config([override])


def test_hash_ignores_non_semantic_fields_and_tracks_semantic_ones() -> None:
    base = config_hash(load_config([]))
    assert config_hash(load_config(["run.results_dir=/elsewhere", "train.progress=false"])) == base
    assert config_hash(load_config(["data.path=/some/archive.tar.gz", "train.device=cpu"])) == base
    assert config_hash(load_config(["train.update_impl=eager"])) == base
    assert config_hash(load_config(["optim.lr=0.05"])) != base
    assert config_hash(load_config(["run.seed=1"])) != base


def test_pinned_hashes() -> None:
    # Changing these breaks the identity of every recorded run: only with a record-format bump.
    assert non_default_values(load_config([])) == {}
    assert config_hash(load_config([])) == "44136fa355b3"
    assert config_hash(load_config(["profile=cpu"])) == PINNED_CPU
    assert config_hash(load_config(["profile=smoke"])) == PINNED_SMOKE


PINNED_CPU = "a0335e8321e8"
PINNED_SMOKE = "0bdde7151798"
