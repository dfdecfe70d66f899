"""MobileNetV2 for 32x32 images (Sandler et al. 2018), the half-width variant CRD and the paper call
"MobileNetV2": width multiplier 0.5, expansion 6, 1280-d penultimate layer.

A stride-2 3x3 stem, seven groups of inverted-residual blocks, a 1x1 conv to 1280 channels (the
head), global average pooling, one linear classifier. The seven groups are gathered in four
stages, at 16x16, 8x8, 4x4 and 2x2 for a 32x32 input, where the reference code takes its features.
Features: the stem output (after ReLU), then each stage's output (a linear bottleneck, so with
no activation).
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.models.base import FeatureModel, init_weights

# Each stage is a list of block groups: (expansion, output channels at width 1, blocks, stride of
# the group's first block).
STAGES = (
    ((1, 16, 1, 1), (6, 24, 2, 1)),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)
LAST_CHANNELS = 1280


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN; plus the input when the shape is
    unchanged. The expansion conv is kept even at expansion 1, as in the reference code."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            *conv_bn_relu(in_channels, hidden, 1),
            *conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(FeatureModel):
    """MobileNetV2 with width multiplier ``width`` (0.5 in the paper's zoo)."""

    def __init__(self, width: float = 0.5, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        channels = int(32 * width)
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, channels, 3, stride=2))
        stages = []
        for block_groups in STAGES:
            blocks = []
            for expansion, group_channels, num_blocks, first_stride in block_groups:
                out_channels = int(group_channels * width)
                for stride in [first_stride] + [1] * (num_blocks - 1):
                    blocks.append(InvertedResidual(channels, out_channels, stride, expansion))
                    channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        last_channels = int(LAST_CHANNELS * width) if width > 1.0 else LAST_CHANNELS
        self.head = nn.Sequential(*conv_bn_relu(channels, last_channels, 1))
        self.classifier = nn.Linear(last_channels, num_classes)
        init_weights(self, linear_std=0.01)
