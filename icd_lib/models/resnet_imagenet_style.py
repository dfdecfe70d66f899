"""ImageNet-style ResNet-50 adapted to 32x32 images (He et al. 2016), as in the CRD zoo: a 3x3
stride-1 stem with 64 channels and no max pooling, then the four stages of bottleneck blocks
(3, 4, 6, 3 blocks; 256, 512, 1024, 2048 output channels), global average pooling, one classifier.
Features: the stem output, then each stage's output, all after ReLU.
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.models.base import FeatureModel, init_weights
from icd_lib.models.resnet import shortcut

STEM_CHANNELS = 64
STAGE_PLANES = (64, 128, 256, 512)  # bottleneck widths; stage outputs are EXPANSION times wider
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU (carries the stride), 1x1 conv-BN to ``4 * planes``; plus the
    input (1x1 conv + BN when the shape changes); ReLU."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = EXPANSION * planes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(),
            nn.Conv2d(planes, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.relu(self.body(x) + self.shortcut(x))


class BottleneckResNet(FeatureModel):
    """ResNet with bottleneck blocks; ``blocks_per_stage`` = (3, 4, 6, 3) gives ResNet-50."""

    def __init__(self, blocks_per_stage: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 100,
                 in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STEM_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU(),
        )
        channels = STEM_CHANNELS
        stages = []
        for index, (planes, num_blocks) in enumerate(zip(STAGE_PLANES, blocks_per_stage)):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_stride in [stride] + [1] * (num_blocks - 1):
                blocks.append(Bottleneck(channels, planes, block_stride))
                channels = EXPANSION * planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)
