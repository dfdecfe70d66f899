"""ShuffleNetV1 for 32x32 images (Zhang et al. 2018), the variant CRD and the paper use: 3 groups,
stages of 4, 8 and 4 units with 240, 480 and 960 channels.

A 1x1 stem with 24 channels (no downsampling), three stages that each halve the resolution in
their first unit, global average pooling, one linear classifier.
Features: the stem output, then each stage's output, all after ReLU.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from icd_lib.models.base import FeatureModel

STEM_CHANNELS = 24
STAGE_CHANNELS = (240, 480, 960)
STAGE_UNITS = (4, 8, 4)
GROUPS = 3


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """(n, g*c, h, w) -> (n, c*g, h, w): channel k*c + j moves to j*g + k."""
    n, channels, height, width = x.shape
    grouped = x.view(n, groups, channels // groups, height, width)
    return grouped.transpose(1, 2).reshape(n, channels, height, width)


class ShuffleUnit(nn.Module):
    """Grouped 1x1 conv-BN-ReLU, channel shuffle, 3x3 depthwise conv-BN-ReLU, grouped 1x1 conv-BN;
    then added to the input (stride 1) or concatenated with its 3x3 average pool (stride 2); ReLU.

    With stride 2 the unit's own branch outputs ``out_channels - in_channels`` channels, so that
    the concatenation has ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int):
        super().__init__()
        self.stride = stride
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        mid_channels = branch_channels // 4
        # The first unit reads the 24-channel stem, too narrow to split into groups.
        self.first_groups = 1 if in_channels == STEM_CHANNELS else groups
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, stride=stride, padding=1,
                               groups=mid_channels, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, branch_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = nn.functional.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            shortcut = nn.functional.avg_pool2d(x, 3, stride=2, padding=1)
            out = torch.cat([out, shortcut], 1)
        else:
            out = out + x
        return nn.functional.relu(out)


class ShuffleNetV1(FeatureModel):
    """ShuffleNetV1 with ``groups`` groups; ``stage_channels`` and ``stage_units`` per stage."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3,
                 stage_channels: tuple[int, ...] = STAGE_CHANNELS,
                 stage_units: tuple[int, ...] = STAGE_UNITS, groups: int = GROUPS):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STEM_CHANNELS, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU()
        )
        channels = STEM_CHANNELS
        stages = []
        for out_channels, num_units in zip(stage_channels, stage_units):
            units = [ShuffleUnit(channels, out_channels, stride=2, groups=groups)]
            units += [ShuffleUnit(out_channels, out_channels, stride=1, groups=groups)
                      for _ in range(num_units - 1)]
            stages.append(nn.Sequential(*units))
            channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.head = nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)
        # PyTorch's default initialisation, as in the reference code.
