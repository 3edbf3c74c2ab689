"""The analytic FLOP model: FlopCounterMode agreement on the zoo, frozen prefixes, a hand-computed case."""

from __future__ import annotations

import pytest
import torch
from cost_test_utils import INPUT_SHAPE, TinyNet, mask_body_conv
from torch.utils.flop_counter import FlopCounterMode

from spfde_core.cost.flops import Split, op_flops, sample_flops, sample_macs
from spfde_core.cost.layers import profile_model
from spfde_core.cost.meter import active_counts
from spfde_core.models import MODELS, build_model


def _meta_model(name: str):
    entry = MODELS.get(name)
    with torch.device("meta"):
        model = build_model(name, 10 if entry.input_size == 32 else 1000)
    return model, (3, entry.input_size, entry.input_size)


def _counter_flops(model, shape, frozen: int) -> int:
    """FlopCounterMode's count of one full training step (forward + backward) on batch 2."""
    model.num_frozen_blocks = frozen
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(2, *shape, device="meta")).sum().backward()
    model.num_frozen_blocks = 0
    return counter.get_total_flops()


@pytest.mark.parametrize("name", MODELS.names())
def test_dense_step_matches_flop_counter_for_every_zoo_model(name: str) -> None:
    model, shape = _meta_model(name)
    profile = profile_model(model, shape)
    ours = 2 * sample_macs(profile).to_flops().total  # conv + linear terms, batch 2
    reference = _counter_flops(model, shape, 0)
    assert reference > 0
    assert abs(ours - reference) / reference < 0.01


@pytest.mark.parametrize(("name", "frozen"), [("resnet20", 1), ("resnet20", 4), ("resnet20", 10), ("vgg19", 5)])
def test_frozen_prefix_matches_flop_counter(name: str, frozen: int) -> None:
    # resnet20 block 4 is layer2.0, whose 1x1 shortcut reads a frozen activation: autograd computes
    # neither its input gradient nor conv1's, and the analytic model must skip exactly those.
    model, shape = _meta_model(name)
    profile = profile_model(model, shape)
    ours = 2 * sample_macs(profile, None, frozen).to_flops().total
    reference = _counter_flops(model, shape, frozen)
    assert abs(ours - reference) / reference < 0.01
    assert ours < 2 * sample_macs(profile).to_flops().total

    per_op = op_flops(profile, None, frozen)
    first_trainable = min(op.index for op in profile.ops if op.block >= frozen and op.kind in ("conv", "linear", "bn"))
    for op, split in zip(profile.ops, per_op, strict=True):
        if op.block < frozen:  # frozen: forward only
            assert split.weight_grad == 0 and split.input_grad == 0 and split.forward > 0
        if op.index <= first_trainable:  # nothing in front of the first trainable layer needs dx
            assert split.input_grad == 0
        if op.block >= frozen and op.kind in ("conv", "linear", "bn"):
            assert split.weight_grad > 0
    if name == "resnet20" and frozen == 4:
        assert per_op[profile.op("layer2.0.shortcut.0").index].input_grad == 0
        assert per_op[profile.op("layer2.0.conv1").index].input_grad == 0
        assert per_op[profile.op("layer2.0.conv2").index].input_grad > 0


def test_hand_computed_tiny_net_with_a_conv_at_density_quarter() -> None:
    model = TinyNet()
    mask_body_conv(model, active=72)  # 72 of 288 weights: density 0.25
    active = active_counts(model)
    assert active == {"body.conv": 72}
    profile = profile_model(model, INPUT_SHAPE)
    assert [op.name for op in profile.ops] == [
        "stem.conv",
        "body.conv",
        "body.bn",
        "body.relu",
        "head.pool",
        "head.fc",
    ]
    per_op = {op.name: s for op, s in zip(profile.ops, op_flops(profile, active), strict=True)}
    # body.conv: 72 active weights x 64 output positions = 4608 MACs = 9216 FLOPs per term.
    assert per_op["body.conv"] == Split(forward=9216, input_grad=9216, weight_grad=9216)
    # Dense it would be 288 x 64 x 2 = 36864 per term: the count scales with the density.
    dense = {op.name: s for op, s in zip(profile.ops, op_flops(profile), strict=True)}
    assert dense["body.conv"] == Split(36864, 36864, 36864)
    # stem.conv: the network's first layer, 108 weights x 64 positions: no input gradient.
    assert per_op["stem.conv"] == Split(forward=13824, input_grad=0, weight_grad=13824)
    # BN on 8 x 64 = 512 elements: forward 5/elem, weight grad 3/elem, input grad 4/elem.
    assert per_op["body.bn"] == Split(forward=2560, input_grad=2048, weight_grad=1536)
    assert per_op["body.relu"] == Split(forward=512, input_grad=512, weight_grad=0)
    # Global average pool of a 64-element window per channel: 512 forward, 512 (dy/64) backward.
    assert per_op["head.pool"] == Split(forward=512, input_grad=512, weight_grad=0)
    # Linear 8->2 with bias: 16 MACs + 2 bias adds forward; dx 16 MACs; dW 16 MACs + db 2 adds.
    assert per_op["head.fc"] == Split(forward=34, input_grad=32, weight_grad=34)
    assert sample_flops(profile, active).total == 9216 * 3 + 13824 * 2 + 6144 + 1024 + 1024 + 100
    # Evaluation forward: BN with running statistics (2/elem), no backward.
    assert sample_flops(profile, active, mode="eval") == Split(forward=9216 + 13824 + 1024 + 512 + 512 + 34)
    # Freezing the stem drops its weight gradient; body.conv then needs no input gradient either.
    frozen = {op.name: s for op, s in zip(profile.ops, op_flops(profile, active, 1), strict=True)}
    assert frozen["stem.conv"] == Split(13824, 0, 0)
    assert frozen["body.conv"] == Split(9216, 0, 9216)
    assert frozen["body.bn"] == Split(2560, 2048, 1536)


def test_flops_are_twice_macs_and_units_never_mix() -> None:
    model = TinyNet()
    mask_body_conv(model, active=72)
    profile = profile_model(model, INPUT_SHAPE)
    active = active_counts(model)
    macs = sample_macs(profile, active)
    assert macs.unit == "MACs" and macs.as_dict()["unit"] == "MACs"
    assert macs == Split(4608 + 6912 + 16, 4608 + 16, 4608 + 6912 + 16, "MACs")
    conv_linear = [s for op, s in zip(profile.ops, op_flops(profile, active), strict=True) if op.kind == "conv"]
    assert sum(s.total for s in conv_linear) == 2 * (macs.total - 48)  # linear's 3 x 16 MACs left out
    assert macs.to_flops() == Split(2 * macs.forward, 2 * macs.input_grad, 2 * macs.weight_grad, "FLOPs")
    with pytest.raises(ValueError, match="cannot add"):
        _ = macs + Split(1, 0, 0)


def test_residual_fork_accumulation_and_add_are_counted() -> None:
    model, shape = _meta_model("resnet20")
    profile = profile_model(model, shape)
    per_op = {op.name: s for op, s in zip(profile.ops, op_flops(profile), strict=True)}
    add = profile.op("layer1.0.add")
    assert per_op["layer1.0.add"] == Split(add.out_numel, 0, 0)
    # stem.relu's output feeds layer1.0.conv1 and the identity shortcut: one accumulation per element.
    relu = profile.op("stem.relu")
    assert per_op["stem.relu"].input_grad == 2 * relu.out_numel
    # Frozen stem: its output needs no gradient, so no accumulation either.
    frozen = {op.name: s for op, s in zip(profile.ops, op_flops(profile, None, 1), strict=True)}
    assert frozen["stem.relu"] == Split(relu.out_numel, 0, 0)
