"""VGG with BatchNorm for 32x32 images (Simonyan and Zisserman 2015): vgg8, vgg11, vgg13, vgg16, vgg19.

Five blocks of 3x3 conv-BN-ReLU layers (64, 128, 256, 512, 512 channels), 2x2 max pooling after the
first three blocks (and after the fourth for inputs of 64 pixels or more, as in the reference
code), global average pooling and one linear classifier on the 512-d vector.
Features: the output of each of the five blocks, after ReLU.
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.models.base import FeatureModel, global_pool, init_weights

# Convolutions per block for each depth; the widths are always BLOCK_WIDTHS.
LAYERS_PER_BLOCK = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
POOL_FOURTH_BLOCK_FROM = 64  # input height at which the fourth block is pooled too


def conv_block(in_channels: int, out_channels: int, num_layers: int) -> nn.Sequential:
    layers = []
    for _ in range(num_layers):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1),
                   nn.BatchNorm2d(out_channels), nn.ReLU()]
        in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(FeatureModel):
    """VGG-``depth`` with BatchNorm (conv biases kept, as in the reference code)."""

    def __init__(self, depth: int, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if depth not in LAYERS_PER_BLOCK:
            raise ValueError(f"VGG depth must be one of {sorted(LAYERS_PER_BLOCK)}, got {depth}")
        blocks = []
        for width, num_layers in zip(BLOCK_WIDTHS, LAYERS_PER_BLOCK[depth]):
            blocks.append(conv_block(in_channels, width, num_layers))
            in_channels = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(BLOCK_WIDTHS[-1], num_classes)
        init_weights(self, linear_std=0.01)

    def extract(self, x: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        pool_fourth = x.shape[-2] >= POOL_FOURTH_BLOCK_FROM
        features = []
        out = x
        for index, block in enumerate(self.blocks):
            if index in (1, 2, 3) or (index == 4 and pool_fourth):
                out = nn.functional.max_pool2d(out, 2)
            out = block(out)
            features.append(out)
        return tuple(features), global_pool(out)
