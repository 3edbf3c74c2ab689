"""The fp32 memory model on a hand-checkable tiny net, and the measured peak."""

from __future__ import annotations

import torch
from cost_test_utils import INPUT_SHAPE, TinyNet, mask_body_conv

from spfde_core.cost.layers import profile_model
from spfde_core.cost.memory import MemoryBreakdown, measured_peak, memory_model
from spfde_core.cost.meter import active_counts


def _tiny():
    model = TinyNet()
    mask_body_conv(model, active=72)
    return profile_model(model, INPUT_SHAPE), active_counts(model)


def test_memory_model_hand_numbers_nothing_frozen() -> None:
    profile, active = _tiny()
    mem = memory_model(profile, active, frozen_blocks=0, batch_size=4)
    # weights (fp32 values): stem 108 + body.conv 72 active + BN 4 x 8 (gamma, beta, mean, var) + fc 16 + 2.
    # index: body.conv's bitmask, 288 bits = 36 bytes.
    # weight grads: stem 108 + body.conv 72 + BN gamma/beta 16 + fc 18.
    # activations saved, per sample: image 192 (stem.conv input), stem output 256 (body.conv input),
    #   body.conv output 512 (BN input), ReLU output 512, pooled 8 (fc input) = 1480.
    # activation-gradient peak, per sample: BN or ReLU, 512 output-grad + 512 input-grad = 1024.
    assert mem == MemoryBreakdown(
        weights=(108 + 72 + 32 + 18) * 4,
        weight_index=36,
        activations=1480 * 4 * 4,
        weight_grads=(108 + 72 + 16 + 18) * 4,
        activation_grads=1024 * 4 * 4,
    )
    assert mem.total == 920 + 36 + 23680 + 856 + 16384


def test_frozen_blocks_drop_their_gradient_and_activation_terms() -> None:
    profile, active = _tiny()
    free = memory_model(profile, active, 0, 4)
    one = memory_model(profile, active, 1, 4)  # stem frozen
    two = memory_model(profile, active, 2, 4)  # stem and body frozen: only the head trains
    assert one.weights == two.weights == free.weights  # frozen weights are still stored
    assert one.weight_grads == (72 + 16 + 18) * 4
    assert one.activations == (256 + 512 + 512 + 8) * 4 * 4  # the image is no longer kept
    assert two.weight_grads == 18 * 4
    assert two.activations == 8 * 4 * 4  # only the fc input
    assert two.activation_grads == 2 * 4 * 4  # only the logits' gradient
    assert free.total > one.total > two.total


def test_bitmask_index_and_sparse_values_shrink_weights_with_density() -> None:
    profile, _ = _tiny()
    dense = memory_model(profile, None, 0, 4)
    sparse = memory_model(profile, {"body.conv": 72}, 0, 4)
    assert dense.weight_index == 0
    assert dense.weights - sparse.weights == (288 - 72) * 4
    assert sparse.weight_index == 36
    assert dense.weight_grads - sparse.weight_grads == (288 - 72) * 4


def test_measured_peak_reports_rss_on_cpu() -> None:
    peak = measured_peak(torch.device("cpu"))
    assert peak["device"] == "cpu" and peak["cuda_peak_allocated_bytes"] is None
    assert peak["cpu_peak_rss_bytes"] > 10 * 2**20  # a Python process with torch loaded
