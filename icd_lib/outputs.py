"""The two small records every part of the library passes around.

``ModelOutput`` is what a model returns when asked for its features; ``ModelShapes`` is what a
distiller needs to know about a model at construction time (no tensors, only sizes).
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ModelOutput(NamedTuple):
    """Outputs of one forward pass.

    logits:   (n, num_classes)
    features: intermediate feature maps after each stage, stem first, each (n, c, h, w)
    pooled:   (n, d) pooled penultimate feature (the input of the classifier)
    """

    logits: Tensor
    features: tuple[Tensor, ...]
    pooled: Tensor


class ModelShapes(NamedTuple):
    """Sizes of a model's outputs for one input, batch dimension left out."""

    feature_shapes: tuple[tuple[int, ...], ...]
    pooled_dim: int
    num_classes: int
