"""What every model of the zoo shares: the forward contract and the weight initialisation."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from icd_lib.outputs import ModelOutput


class FeatureModel(nn.Module):
    """A classifier that can also return its intermediate features.

    A subclass builds ``self.stem``, ``self.stages`` (an ``nn.ModuleList``), ``self.head`` (what
    runs between the last stage and the pooling; ``nn.Identity()`` if nothing) and
    ``self.classifier`` (an ``nn.Linear``). The features are the stem's output and each stage's
    output; ``pooled`` is the global average of the head's output. A model whose layers do not fit
    this shape overrides ``extract``. ``model(x)`` gives logits (n, num_classes),
    ``model(x, with_features=True)`` a ``ModelOutput``.
    """

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Module
    classifier: nn.Linear

    @property
    def feature_dim(self) -> int:
        """d, the width of ``pooled`` (the classifier's input)."""
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def extract(self, x: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """x (n, c, h, w) -> (feature maps, stem first, each (n, c_i, h_i, w_i); pooled (n, d))."""
        out = self.stem(x)
        features = [out]
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        return tuple(features), global_pool(self.head(out))

    def forward(self, x: Tensor, with_features: bool = False) -> Tensor | ModelOutput:
        features, pooled = self.extract(x)
        logits = self.classifier(pooled)
        if with_features:
            return ModelOutput(logits=logits, features=features, pooled=pooled)
        return logits


def global_pool(x: Tensor) -> Tensor:
    """(n, c, h, w) -> (n, c): the average over all positions, whatever the input size.

    On 32x32 inputs this is exactly the fixed-size average pooling of the reference code (its
    last maps are 8x8, 4x4 or 2x2); unlike it, it also works on 28x28 Fashion-MNIST.
    """
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """The reference code's initialisation.

    Convolutions: He normal, fan-out mode (std sqrt(2 / (k*k*c_out))), bias 0. BatchNorm: weight
    1, bias 0. Linear: bias 0; weight drawn from N(0, linear_std^2) when ``linear_std`` is given,
    else PyTorch's default.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
