"""build_model / model_names / MODELS behaviour."""

from __future__ import annotations

import pytest
from zoo_test_utils import ALL_MODELS

from spfde_core.models import MODELS, BlockModel, build_model, model_names
from spfde_core.models.cifar_resnet import CifarResNet


def test_registry_holds_exactly_the_zoo() -> None:
    assert model_names() == sorted(ALL_MODELS)
    for name in ALL_MODELS:
        assert MODELS.get(name).input_size == (224 if name in ("resnet18", "resnet50") else 32)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        build_model("resnet33", 10)
    for name in ALL_MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["vgg19", "resnet18", "resnet50"])
def test_width_rejected_where_unsupported(name: str) -> None:
    with pytest.raises(ValueError, match="width"):
        build_model(name, 10, width=2.0)


def stem_and_stage_widths(model: CifarResNet) -> list[int]:
    names = dict(model.named_blocks())
    return [names["stem"].conv.out_channels] + [names[f"layer{s}.0"].conv2.out_channels for s in (1, 2, 3)]


def test_width_defaults_and_overrides() -> None:
    assert stem_and_stage_widths(build_model("resnet32", 10)) == [16, 16, 32, 64]
    assert stem_and_stage_widths(build_model("resnet32_w2", 10)) == [32, 32, 64, 128]
    assert stem_and_stage_widths(build_model("resnet32", 10, width=2)) == [32, 32, 64, 128]
    assert stem_and_stage_widths(build_model("resnet20", 10, width=0.5)) == [8, 8, 16, 32]
    with pytest.raises(ValueError):
        build_model("resnet20", 10, width=0)


def test_bad_depth_rejected() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(33, 10)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_is_a_block_model_with_requested_classes(name: str) -> None:
    model = build_model(name, 7)
    assert isinstance(model, BlockModel)
    assert model.block_names[-1] == "head"
    assert model.blocks[-1].fc.out_features == 7
    assert model.num_frozen_blocks == 0
