"""The weight initialisation of the MEST / GraSP CIFAR models.

MEST's ``resnet32`` and ``vgg_grasp`` both inherit GraSP's ``_initialize_weights`` (reference notes
Sec. 1.1): Kaiming-normal (fan_out, ReLU gain) convs, N(0, 0.01^2) linear weights with zero bias,
and BN weight 1 / bias 0.
"""

from __future__ import annotations

from torch import nn


def mest_init_(model: nn.Module) -> None:
    """Re-initialise every conv, linear and BN of ``model`` in place, as MEST/GraSP do.

    Args:
        model: any module; submodules of other types are left untouched.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
