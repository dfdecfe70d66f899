"""ICD keeps no per-image state; CRD's memory bank grows with the training set."""
from __future__ import annotations

import pytest

from icd_lib.losses import memory_footprint
from icd_lib.outputs import ModelShapes

# WRN-16-2 student and WRN-40-2 teacher on CIFAR: both pool 128 channels
WRN_16_2 = ModelShapes(((16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8)), pooled_dim=128, num_classes=100)
WRN_40_2 = WRN_16_2
CIFAR100, IMAGENET = 50_000, 1_281_167


def test_icd_state_does_not_depend_on_the_dataset():
    small = memory_footprint("icd", WRN_16_2, WRN_40_2, num_data=CIFAR100)
    large = memory_footprint("icd", WRN_16_2, WRN_40_2, num_data=IMAGENET)
    assert small == large
    # two Linear(128, 128) heads with biases, tau and b: (2 * (128 * 128 + 128) + 2) float32 entries
    assert small == {"parameters": (2 * (128 * 128 + 128) + 2) * 4, "buffers": 0}


@pytest.mark.parametrize("num_data", [CIFAR100, IMAGENET])
def test_crd_bank_grows_linearly_with_the_dataset(num_data):
    footprint = memory_footprint("crd", WRN_16_2, WRN_40_2, num_data=num_data)
    # two banks (student, teacher) of num_data x 128 float32, plus the two normalisers Z
    assert footprint["buffers"] == (2 * num_data * 128 + 2) * 4
    assert footprint["parameters"] == 2 * (128 * 128 + 128) * 4


def test_sizes_for_cifar100_and_imagenet():
    crd = {n: memory_footprint("crd", WRN_16_2, WRN_40_2, num_data=n)["buffers"] for n in (CIFAR100, IMAGENET)}
    assert crd[CIFAR100] / 2**20 == pytest.approx(48.83, abs=0.01)  # MiB
    assert crd[IMAGENET] / 2**30 == pytest.approx(1.2218, abs=1e-3)  # GiB
