"""Wide ResNets (Zagoruyko and Komodakis 2016): wrn_40_2, wrn_40_1, wrn_16_2, wrn_16_1.

WRN-depth-k: a 3x3 stem with 16 channels, then three stages of n = (depth - 4) / 6 pre-activation
blocks with 16k, 32k and 64k channels at 32x32, 16x16 and 8x8 (for a 32x32 input), then BN-ReLU
(the head), global average pooling, one linear classifier.
Features: the stem output, then each stage's output. The blocks are pre-activation, so these are
the residual stream itself, with no activation of their own (as in the reference code); the
head's BN-ReLU comes after the last one.
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.models.base import FeatureModel, init_weights


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the input (a 1x1 conv of the activated input when the
    width changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = nn.functional.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(nn.functional.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(FeatureModel):
    """WRN-``depth``-``widen_factor`` for 32x32 images."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, ..., 40), got {depth}")
        blocks_per_stage = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages = []
        for index, (stage_in, stage_out) in enumerate(zip(widths[:-1], widths[1:])):
            stride = 1 if index == 0 else 2
            blocks = [PreActBlock(stage_in, stage_out, stride)]
            blocks += [PreActBlock(stage_out, stage_out) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU())
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_weights(self)
