"""ShuffleNetV2 for 32x32 images (Ma et al. 2018), the 1x variant CRD and the paper use: stages of
116, 232 and 464 channels, a 1x1 conv to 1024 channels before pooling.

A 1x1 stem with 24 channels (no downsampling); each stage is one downsampling unit followed by
3, 7 and 3 basic units; then 1x1 conv-BN-ReLU to 1024, global average pooling, one classifier.
Features: the stem output (after ReLU), then each stage's output (after the channel shuffle);
the 1024-channel conv is pooled.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from icd_lib.models.base import FeatureModel
from icd_lib.models.shufflenetv1 import channel_shuffle

STEM_CHANNELS = 24
STAGE_CHANNELS = (116, 232, 464)
BASIC_UNITS = (3, 7, 3)  # after the downsampling unit of each stage
LAST_CHANNELS = 1024


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
            groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                        padding=kernel_size // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicUnit(nn.Module):
    """Split the channels in halves; keep the first, pass the second through 1x1 conv-BN-ReLU,
    3x3 depthwise conv-BN, 1x1 conv-BN-ReLU; concatenate; shuffle in 2 groups."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            conv_bn(half, half, 1),
            conv_bn(half, half, 3, groups=half, relu=False),
            conv_bn(half, half, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([kept, self.branch(transformed)], 1), 2)


class DownUnit(nn.Module):
    """Two stride-2 branches on the whole input, each giving out_channels / 2; concatenate; shuffle.
    Left: 3x3 depthwise conv-BN, 1x1 conv-BN-ReLU. Right: 1x1 conv-BN-ReLU, 3x3 depthwise
    conv-BN, 1x1 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.left = nn.Sequential(
            conv_bn(in_channels, in_channels, 3, stride=2, groups=in_channels, relu=False),
            conv_bn(in_channels, half, 1),
        )
        self.right = nn.Sequential(
            conv_bn(in_channels, half, 1),
            conv_bn(half, half, 3, stride=2, groups=half, relu=False),
            conv_bn(half, half, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(FeatureModel):
    """ShuffleNetV2 with the given stage widths, basic units per stage and last conv width."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3,
                 stage_channels: tuple[int, ...] = STAGE_CHANNELS,
                 basic_units: tuple[int, ...] = BASIC_UNITS, last_channels: int = LAST_CHANNELS):
        super().__init__()
        self.stem = conv_bn(in_channels, STEM_CHANNELS, 1)
        channels = STEM_CHANNELS
        stages = []
        for out_channels, num_units in zip(stage_channels, basic_units):
            units = [DownUnit(channels, out_channels)]
            units += [BasicUnit(out_channels) for _ in range(num_units)]
            stages.append(nn.Sequential(*units))
            channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.head = conv_bn(channels, last_channels, 1)
        self.classifier = nn.Linear(last_channels, num_classes)
        # PyTorch's default initialisation, as in the reference code.
