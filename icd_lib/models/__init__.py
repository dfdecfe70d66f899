"""The CIFAR model zoo of the paper (the RepDistiller / CRD zoo), written for this book.

Build a model by name::

    model = build_model("wrn_40_2", num_classes=100, in_channels=3)
    logits = model(x)                              # (n, num_classes)
    out = model(x, with_features=True)             # ModelOutput(logits, features, pooled)

Every model works on 32x32 inputs (CIFAR) and on 28x28 (Fashion-MNIST, with ``in_channels=1``):
the last feature map is average-pooled over all positions, whatever its size.

The feature convention, for the losses that read intermediate layers:

- ``out.features`` is a tuple of feature maps (n, c_i, h_i, w_i): the stem's output first, then
  the output of each stage, deepest last. ResNets, WRNs and ShuffleNets have 4 (stem + 3 stages:
  32x32, 32x32, 16x16, 8x8 for a 32x32 input; ShuffleNets 32, 16, 8, 4); VGGs, MobileNetV2
  and ResNet50 have 5.
- Maps are taken after the stage's activation (ReLU), except where the architecture has none at
  that point: the WRNs are pre-activation networks, so their stem and stage outputs are the
  residual stream itself; MobileNetV2's stage outputs are linear bottlenecks. This is what the
  reference code returns, so the baselines see the same tensors as in the paper's tables.
- ``out.pooled`` (n, d) is the classifier's input, ``d = model.feature_dim``;
  ``out.logits == model.classifier(out.pooled)``. Some models apply a head between the last
  feature map and the pooling (WRN: BN-ReLU; MobileNetV2 and ShuffleV2: a 1x1 conv-BN-ReLU to
  1280 / 1024 channels), so ``pooled`` need not be the average of ``features[-1]``.
- The reference code's list ``feat`` is ``list(out.features) + [out.pooled]``. Its choices
  translate as: FitNet's hint layer ``feat[2]`` is ``features[2]`` (= ``features[len // 2]`` for
  4 or 5 maps); AT, VID and NST use ``feat[1:-1]`` = ``features[1:]``; SP and FT use
  ``feat[-2]`` = ``features[-1]``; CRD, PKT, RKD, CC and ICD use ``pooled``.

``probe_shapes(model)`` reports these sizes (a ``ModelShapes``) for building a distiller.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from icd_lib.errors import InputError
from icd_lib.models.base import FeatureModel
from icd_lib.models.mobilenetv2 import MobileNetV2
from icd_lib.models.resnet import WIDE_WIDTHS, CifarResNet
from icd_lib.models.resnet_imagenet_style import BottleneckResNet
from icd_lib.models.shufflenetv1 import ShuffleNetV1
from icd_lib.models.shufflenetv2 import ShuffleNetV2
from icd_lib.models.vgg import VGG
from icd_lib.models.wrn import WideResNet
from icd_lib.outputs import ModelShapes

# name -> constructor taking (num_classes=..., in_channels=...)
_REGISTRY: dict[str, Callable[..., FeatureModel]] = {
    "wrn_40_2": partial(WideResNet, 40, 2),
    "wrn_40_1": partial(WideResNet, 40, 1),
    "wrn_16_2": partial(WideResNet, 16, 2),
    "wrn_16_1": partial(WideResNet, 16, 1),
    **{f"resnet{depth}": partial(CifarResNet, depth) for depth in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": partial(CifarResNet, 8, WIDE_WIDTHS),
    "resnet32x4": partial(CifarResNet, 32, WIDE_WIDTHS),
    **{f"vgg{depth}": partial(VGG, depth) for depth in (8, 11, 13, 16, 19)},
    "mobilenetv2": partial(MobileNetV2, 0.5),
    "shufflev1": ShuffleNetV1,
    "shufflev2": ShuffleNetV2,
    "resnet50": BottleneckResNet,
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)

# The reference code's spellings, accepted by build_model as well (names are case-insensitive).
_ALIASES = {"mobile_half": "mobilenetv2"}


def _check_positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")


def build_model(name: str, num_classes: int = 100, in_channels: int = 3) -> FeatureModel:
    """A freshly initialised model of the zoo; ``name`` is one of ``MODEL_NAMES``."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}; "
                        f"valid names: {', '.join(MODEL_NAMES)}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    _check_positive_int(num_classes, "num_classes")
    _check_positive_int(in_channels, "in_channels")
    return _REGISTRY[key](num_classes=num_classes, in_channels=in_channels)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; BatchNorm running statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _forward_in_eval_mode(model: nn.Module, input_shape: tuple[int, int, int], batch_size: int):
    """One forward pass of zeros without gradients in eval mode (so BatchNorm running statistics
    are untouched); every submodule's train/eval mode is restored afterwards."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
    parameter = next(model.parameters())
    x = torch.zeros(batch_size, *input_shape, dtype=parameter.dtype, device=parameter.device)
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            return model(x, with_features=True)
    finally:
        for module, training in modes.items():
            module.training = training


def probe_shapes(model: nn.Module, input_shape: tuple[int, int, int] = (3, 32, 32)) -> ModelShapes:
    """Sizes of ``model``'s outputs for inputs of ``input_shape`` (c, h, w), from one forward pass of
    a batch of 2 in eval mode without gradients; the model's train/eval modes are restored."""
    out = _forward_in_eval_mode(model, input_shape, batch_size=2)
    return ModelShapes(
        feature_shapes=tuple(tuple(feature.shape[1:]) for feature in out.features),
        pooled_dim=out.pooled.shape[1],
        num_classes=out.logits.shape[1],
    )


def count_flops(model: nn.Module, input_shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Floating-point operations of one forward pass of one image, measured with
    ``torch.utils.flop_counter``: convolutions and matrix products, a multiply-add counted as 2
    (BatchNorm, activations and pooling are left out; they add a few percent)."""
    with FlopCounterMode(display=False) as counter:
        _forward_in_eval_mode(model, input_shape, batch_size=1)
    return counter.get_total_flops()


__all__ = ["MODEL_NAMES", "FeatureModel", "build_model", "count_flops", "count_parameters", "probe_shapes"]
