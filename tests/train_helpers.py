"""Tiny models and data sets for the training-engine tests (fast on a CPU, no downloads)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from icd_lib.models.base import FeatureModel, global_pool


class TinyNet(FeatureModel):
    """conv-BN-ReLU stem, one strided conv stage, global pool, linear classifier."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.classifier = nn.Linear(2 * width, num_classes)

    def extract(self, x: Tensor):
        stem = self.stem(x)
        stage = self.stage(stem)
        return (stem, stage), global_pool(stage)


class NoisyBlobs(Dataset):
    """Class c is a fixed random 3x8x8 pattern; each access adds fresh noise from the global torch RNG
    (like a random augmentation), so exact resumption needs the RNG state restored."""

    def __init__(self, n: int = 96, num_classes: int = 4, noise: float = 0.8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.patterns = torch.randn(num_classes, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
        self.labels = torch.randint(0, num_classes, (n,), generator=g)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        y = int(self.labels[index])
        return self.patterns[y] + self.noise * torch.randn(3, 8, 8), y, index


class RecordingBlobs(NoisyBlobs):
    """NoisyBlobs that notes which items are read, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.visited = []

    def __getitem__(self, index: int):
        self.visited.append(index)
        return super().__getitem__(index)
