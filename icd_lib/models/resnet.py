"""CIFAR ResNets (He et al. 2016, section 4.2): resnet8 ... resnet110, resnet8x4, resnet32x4.

A 3x3 stem and three stages of basic blocks at 32x32, 16x16 and 8x8 (for a 32x32 input), each of
n = (depth - 2) / 6 blocks. The "x4" models are four times as wide (stem 32, stages 64, 128, 256).
Features: stem output, then each stage's output, all after ReLU.
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.models.base import FeatureModel, init_weights

NARROW_WIDTHS = (16, 16, 32, 64)  # stem, stage 1, stage 2, stage 3
WIDE_WIDTHS = (32, 64, 128, 256)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """A residual block's skip path: identity, or a strided 1x1 conv + BN where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nn.functional.relu(out + self.shortcut(x))


class CifarResNet(FeatureModel):
    """ResNet-``depth`` for 32x32 images; ``widths`` = (stem, stage 1, stage 2, stage 3) channels."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int] = NARROW_WIDTHS,
                 num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages = []
        for index, (stage_in, stage_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 1 if index == 0 else 2
            blocks = [BasicBlock(stage_in, stage_out, stride)]
            blocks += [BasicBlock(stage_out, stage_out) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Identity()
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_weights(self)
