"""The model zoo: sizes against the published figures, the forward contract, the feature convention."""
from __future__ import annotations

import functools
from typing import NamedTuple

import pytest
import torch
from torch import nn

from icd_lib.models import MODEL_NAMES, build_model, count_flops, count_parameters, probe_shapes
from icd_lib.outputs import ModelOutput

# Sizes of the RepDistiller zoo (CRD, Tian et al. 2020), 100 classes: params, GFLOP per image.
PUBLISHED = {
    "wrn_40_2": (2.255e6, 0.655),
    "wrn_16_2": (0.703e6, 0.202),
    "wrn_40_1": (0.570e6, 0.167),
    "resnet56": (0.862e6, 0.252),
    "resnet20": (0.278e6, 0.082),
    "resnet32x4": (7.43e6, 2.166),
    "resnet8x4": (1.23e6, 0.354),
}
# Models whose every feature map is taken after a ReLU (not the WRNs, which are pre-activation,
# nor MobileNetV2, whose stages end in linear bottlenecks).
ALL_FEATURES_AFTER_RELU = ("resnet8", "resnet8x4", "vgg8", "shufflev1", "shufflev2", "resnet50")
# Models with no head between the last feature map and the pooling.
POOLED_IS_MEAN_OF_LAST_FEATURE = ("resnet20", "resnet32x4", "vgg13", "shufflev1", "resnet50")


class ZooRun(NamedTuple):
    model: nn.Module
    x: torch.Tensor
    out: ModelOutput
    classifier_input: torch.Tensor  # what the classifier layer actually received, seen by a hook


@functools.lru_cache(maxsize=None)
def zoo_run(name: str) -> ZooRun:
    """Build ``name`` once for the whole file and run it once, in eval mode without gradients, on a
    fixed (2, 3, 32, 32) batch (building and running all 22 models takes a few seconds)."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen = []
    handle = model.classifier.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        out = model(x, with_features=True)
    handle.remove()
    assert len(seen) == 1
    return ZooRun(model, x, out, seen[0])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name):
    expected, _ = PUBLISHED[name]
    assert count_parameters(build_model(name, num_classes=100)) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_flops_match_published(name):
    _, expected_gflop = PUBLISHED[name]
    assert count_flops(zoo_run(name).model) / 1e9 == pytest.approx(expected_gflop, rel=0.01)


def test_parameter_count_of_resnet8_by_hand():
    # stem 3x3 conv 3->16 + BN; stage 1: block 16->16 (two 3x3 convs + 2 BN);
    # stage 2: 16->32 stride 2 (two convs, 2 BN, 1x1 shortcut conv + BN); stage 3 likewise 32->64;
    # classifier 64->100 with bias.
    def conv(c_in, c_out, k=3):
        return c_in * c_out * k * k

    def bn(c):
        return 2 * c

    expected = (
        conv(3, 16) + bn(16)
        + conv(16, 16) + conv(16, 16) + 2 * bn(16)
        + conv(16, 32) + conv(32, 32) + 2 * bn(32) + conv(16, 32, 1) + bn(32)
        + conv(32, 64) + conv(64, 64) + 2 * bn(64) + conv(32, 64, 1) + bn(64)
        + 64 * 100 + 100
    )
    assert count_parameters(build_model("resnet8")) == expected


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_contract(name):
    model, x, out, _ = zoo_run(name)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, 100)
    assert out.pooled.shape == (2, model.feature_dim)
    assert len(out.features) in (4, 5)
    assert all(f.ndim == 4 and f.shape[0] == 2 for f in out.features)
    # Deeper maps are never larger.
    sizes = [f.shape[-1] for f in out.features]
    assert sizes == sorted(sizes, reverse=True)
    with torch.no_grad():
        assert torch.equal(model(x), out.logits)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pooled_is_the_classifier_input(name):
    model, _, out, classifier_input = zoo_run(name)
    assert torch.equal(classifier_input, out.pooled)
    # The logits are that vector times the classifier's weights, computed here by hand.
    weight, bias = model.classifier.weight, model.classifier.bias
    torch.testing.assert_close(out.pooled @ weight.T + bias, out.logits)


@pytest.mark.parametrize("name", POOLED_IS_MEAN_OF_LAST_FEATURE)
def test_pooled_is_spatial_mean_of_last_feature(name):
    out = zoo_run(name).out
    torch.testing.assert_close(out.pooled, out.features[-1].mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ALL_FEATURES_AFTER_RELU)
def test_features_are_taken_after_relu(name):
    out = zoo_run(name).out
    assert all((f >= 0).all() for f in out.features)


def test_wrn_features_are_the_residual_stream():
    # Pre-activation: stage outputs have no ReLU of their own, so they take both signs.
    out = zoo_run("wrn_16_2").out
    assert all((f < 0).any() and (f > 0).any() for f in out.features[1:])


@pytest.mark.parametrize("name, expected", [
    ("resnet56", [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]),
    ("wrn_40_2", [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8)]),
    ("resnet32x4", [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]),
    ("vgg8", [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)]),
    ("mobilenetv2", [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2)]),
    ("shufflev1", [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4)]),
    ("shufflev2", [(24, 32, 32), (116, 16, 16), (232, 8, 8), (464, 4, 4)]),
    ("resnet50", [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)]),
])
def test_feature_shapes_follow_the_architecture(name, expected):
    out = zoo_run(name).out
    assert [tuple(f.shape[1:]) for f in out.features] == expected


@pytest.mark.parametrize("name, feature_dim", [
    ("resnet8", 64), ("resnet8x4", 256), ("wrn_40_2", 128), ("wrn_16_1", 64), ("vgg11", 512),
    ("mobilenetv2", 1280), ("shufflev1", 960), ("shufflev2", 1024), ("resnet50", 2048),
])
def test_feature_dim(name, feature_dim):
    assert zoo_run(name).model.feature_dim == feature_dim


@pytest.mark.parametrize("name", [
    "resnet8", "wrn_16_1", "vgg8", "mobilenetv2", "shufflev1", "shufflev2",
    pytest.param("resnet50", marks=pytest.mark.slow),
])
def test_grey_28x28_training_step_reaches_every_parameter(name):
    # One model per family, built for Fashion-MNIST. A layer that is built but never used (or
    # cut off from the output) would get no gradient.
    model = build_model(name, num_classes=10, in_channels=1).train()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    out = model(x, with_features=True)
    assert out.logits.shape == (2, 10)
    assert out.pooled.shape == (2, model.feature_dim)
    out.logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_vgg_pools_its_fourth_block_on_64_pixel_inputs():
    model = zoo_run("vgg8").model
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), with_features=True)
    assert [f.shape[-1] for f in out.features] == [64, 32, 16, 8, 4]


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "vgg8", "mobilenetv2"])
def test_probe_shapes_agrees_with_a_real_forward(name):
    model = build_model(name, num_classes=10, in_channels=1).train()
    shapes = probe_shapes(model, input_shape=(1, 28, 28))
    out = model(torch.randn(3, 1, 28, 28), with_features=True)
    assert shapes.feature_shapes == tuple(tuple(f.shape[1:]) for f in out.features)
    assert shapes.pooled_dim == out.pooled.shape[1] == model.feature_dim
    assert shapes.num_classes == out.logits.shape[1] == 10


def test_probe_shapes_leaves_modes_and_statistics_alone():
    model = build_model("resnet8").train()
    model.stages[0].eval()  # a submodule deliberately in eval mode must stay so
    before = {n: b.clone() for n, b in model.named_buffers()}
    probe_shapes(model)
    assert model.training and model.stem.training and not model.stages[0].training
    assert all(torch.equal(before[n], b) for n, b in model.named_buffers())
    assert all(p.grad is None for p in model.parameters())

    model.eval()
    probe_shapes(model)
    assert not any(m.training for m in model.modules())


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet9'") as error:
        build_model("resnet9")
    assert all(name in str(error.value) for name in MODEL_NAMES)


def test_reference_spellings_are_accepted():
    assert type(build_model("ShuffleV1")) is type(zoo_run("shufflev1").model)
    assert count_parameters(build_model("mobile_half")) == count_parameters(zoo_run("mobilenetv2").model)


@pytest.mark.parametrize("kwargs, error", [
    ({"num_classes": 0}, ValueError),
    ({"in_channels": -1}, ValueError),
    ({"num_classes": 10.0}, TypeError),
    ({"in_channels": True}, TypeError),
])
def test_bad_sizes_are_rejected(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        build_model("resnet8", **kwargs)


def test_num_classes_and_in_channels_reach_the_layers():
    model = build_model("wrn_16_1", num_classes=7, in_channels=1)
    assert model.classifier.out_features == 7
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
