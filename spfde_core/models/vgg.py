"""GraSP's CIFAR VGG-19 with BN (MEST ``models/vgg_grasp.py``; Simonyan & Zisserman 2015).

Config 64,64,M,128,128,M,256x4,M,512x4,M,512x4 (no final max-pool), every conv 3x3 without bias
followed by BN and ReLU; then AvgPool(2) (2x2 -> 1x1 at 32x32 input) and one Linear(512 -> classes).
Reference notes Sec. 1.1.

Blocks (freezing order): one per conv+BN+ReLU unit, named ``stageS.J`` (S = 1..5, the groups between
max-pools; J = position in the group), with each max-pool attached to the unit before it (the last
unit of stages 1-4); then ``head`` (avgpool, flatten, fc). So 16 + 1 = 17 blocks.
Prunable layer names: ``stageS.J.conv`` and ``head.fc``. ``mest_layer_names`` maps them to MEST's
``features.N`` / ``classifier`` names; MEST keeps ``features.0`` (our ``stage1.0.conv``) dense and
its profiles never list the classifier.
"""

from __future__ import annotations

from torch import nn

from spfde_core.models.base import BlockModel, classifier_head, conv_bn_relu
from spfde_core.models.init import mest_init_

# Widths of the convs, grouped by the max-pools that separate them; no pool after the last group.
VGG19_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)


class CifarVGG(BlockModel):
    """VGG with BN for 32x32 inputs, GraSP/MEST variant (single linear classifier).

    Args:
        num_classes: classifier outputs.
        stages: conv widths per max-pool group (default VGG-19).
    """

    def __init__(self, num_classes: int, stages: tuple[tuple[int, ...], ...] = VGG19_STAGES) -> None:
        blocks: list[tuple[str, nn.Module]] = []
        mest_names: dict[str, str] = {}
        in_channels, feature_index = 3, 0
        for s, widths in enumerate(stages, start=1):
            for j, out_channels in enumerate(widths):
                unit = conv_bn_relu(in_channels, out_channels)
                mest_names[f"stage{s}.{j}.conv"] = f"features.{feature_index}"
                feature_index += 3
                if j == len(widths) - 1 and s < len(stages):
                    unit["pool"] = nn.MaxPool2d(2, 2)
                    feature_index += 1
                blocks.append((f"stage{s}.{j}", nn.Sequential(unit)))
                in_channels = out_channels
        blocks.append(("head", classifier_head(nn.AvgPool2d(2), in_channels, num_classes)))
        mest_names["head.fc"] = "classifier"
        super().__init__(blocks)
        self.mest_layer_names = mest_names
        mest_init_(self)

    def sparse_by_default(self, name: str, module: nn.Module) -> bool:
        # MEST's VGG profiles: every conv except the first; the classifier is never listed.
        return isinstance(module, nn.Conv2d) and name != "stage1.0.conv"


def vgg19(num_classes: int) -> CifarVGG:
    """GraSP/MEST VGG-19 with BN for CIFAR (``models/vgg_grasp.py``)."""
    return CifarVGG(num_classes, VGG19_STAGES)
