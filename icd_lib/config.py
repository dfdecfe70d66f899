"""Compute profiles and the paper's recipe.

One switch, the environment variable ``ICD_PROFILE`` (``smoke``, ``book`` or ``paper``), sets how
much compute the notebooks and the CLI use:

- ``smoke``: continuous integration; every chapter runs in about a minute on a 2-core CPU.
- ``book``:  what the rendered book shows; real experiments on Fashion-MNIST sized for a laptop CPU.
- ``paper``: the paper's CIFAR-100 recipe (RepDistiller's, 240 epochs, batch 64) for a GPU.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from icd_lib.errors import InputError

PROFILE_ENV = "ICD_PROFILE"
DEFAULT_PROFILE = "book"

# The paper's schedule (RepDistiller's, Tian et al. 2020): lr x0.1 after epochs 150, 180, 210 of 240.
PAPER_DECAY_FRACTIONS = (150 / 240, 180 / 240, 210 / 240)


# Models trained with lr 0.01 instead of 0.05 in the paper's recipe (RepDistiller, train_student.py).
LOW_LR_MODELS = frozenset({"mobilenetv2", "shufflev1", "shufflev2"})


def decay_milestones(epochs: int, fractions: tuple[float, ...] = PAPER_DECAY_FRACTIONS) -> list[int]:
    """The epochs after which the learning rate decays: ``fractions`` of ``epochs`` (the paper's
    150, 180, 210 of 240 by default), each at least 1 and before the last epoch."""
    return sorted({max(1, round(f * epochs)) for f in fractions if round(f * epochs) < epochs})


def default_lr(model_name: str, base_lr: float = 0.05) -> float:
    """The paper's learning rate for training ``model_name``: 0.01 for MobileNetV2/ShuffleNets, else ``base_lr``."""
    return 0.01 if model_name.lower().replace("_", "") in LOW_LR_MODELS else base_lr


@dataclass(frozen=True)
class Profile:
    """Everything a profile decides: data, models, epochs and the optimiser recipe."""

    name: str
    dataset: str
    teacher: str
    student: str
    teacher_epochs: int
    student_epochs: int
    teacher_train_size: int | None  # None: the whole training set
    student_train_size: int | None
    test_size: int | None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_fractions: tuple[float, ...] = PAPER_DECAY_FRACTIONS
    lr_decay_rate: float = 0.1
    seeds: tuple[int, ...] = (0, 1, 2)
    num_workers: int = 0
    description: str = ""

    def milestones(self, epochs: int) -> list[int]:
        """Epochs after which the learning rate is multiplied by ``lr_decay_rate``."""
        return decay_milestones(epochs, self.lr_decay_fractions)

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        dataset="fashion_mnist",
        teacher="resnet8",
        student="resnet8",
        teacher_epochs=1,
        student_epochs=1,
        teacher_train_size=512,
        student_train_size=512,
        test_size=256,
        seeds=(0,),
        description="CI: tiny subsets, one epoch; checks that the code runs, not what it learns.",
    ),
    "book": Profile(
        name="book",
        dataset="fashion_mnist",
        teacher="resnet20",
        student="resnet8",
        teacher_epochs=5,
        student_epochs=8,
        teacher_train_size=None,
        student_train_size=10_000,
        test_size=None,
        seeds=(0, 1, 2),
        description=(
            "Laptop CPU: Fashion-MNIST as 32x32x3; a resnet20 teacher trained once on all 60,000 "
            "images, resnet8 students distilled on a 10,000-image subset for 8 epochs."
        ),
    ),
    "paper": Profile(
        name="paper",
        dataset="cifar100",
        teacher="wrn_40_2",
        student="wrn_16_2",
        teacher_epochs=240,
        student_epochs=240,
        teacher_train_size=None,
        student_train_size=None,
        test_size=None,
        num_workers=4,
        description="The paper's CIFAR-100 recipe (RepDistiller): SGD, batch 64, 240 epochs. For a GPU.",
    ),
}


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile called ``name`` (default: ``$ICD_PROFILE``, else ``book``), with ``overrides``."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    try:
        profile = PROFILES[name]
    except KeyError:
        raise InputError(
            f"unknown profile {name!r} (set by argument or ${PROFILE_ENV}); "
            f"valid profiles: {', '.join(PROFILES)}"
        ) from None
    return replace(profile, **overrides) if overrides else profile


# Loss weights of each method as the paper and RepDistiller run it: the total objective is
# sum(weight * term). "student" is the plain student (cross-entropy only).
METHOD_WEIGHTS: dict[str, dict[str, float]] = {
    "student": {"ce": 1.0},
    "kd": {"ce": 0.1, "kd": 0.9},
    "fitnet": {"ce": 1.0, "fitnet": 100.0},
    "at": {"ce": 1.0, "at": 1000.0},
    "sp": {"ce": 1.0, "sp": 3000.0},
    "cc": {"ce": 1.0, "cc": 0.02},
    "vid": {"ce": 1.0, "vid": 1.0},
    "rkd": {"ce": 1.0, "rkd": 1.0},
    "pkt": {"ce": 1.0, "pkt": 30000.0},
    "nst": {"ce": 1.0, "nst": 50.0},
    "crd": {"ce": 1.0, "crd": 0.8},
    # two-stage methods (an initialisation stage of 30/240 of the epochs first; see the loss modules):
    # RepDistiller's scripts pass -b 1 (AB), -b 200 (FT), -b 50 (FSP), but its main loop sets the AB
    # and FSP losses to 0 (helper/loops.py), so for them the init stage is the method: weight 0
    "ab": {"ce": 1.0, "ab": 0.0},
    "ft": {"ce": 1.0, "ft": 200.0},
    "fsp": {"ce": 1.0, "fsp": 0.0},
    "crd+kd": {"ce": 1.0, "kd": 1.0, "crd": 0.8},
    "icd": {"ce": 1.0, "icd": 1.0},
    "icd+kd": {"ce": 1.0, "kd": 1.0, "icd": 1.0},
    # logit methods, each with its reference code's CIFAR-100 weights (sources in the loss modules):
    # DKD and DKD+LS carry alpha and beta inside the "dkd" term (mdistiller: CE weight 1)
    "dkd": {"ce": 1.0, "dkd": 1.0},
    "dkd+ls": {"ce": 1.0, "dkd": 1.0},
    "kd+ls": {"ce": 1.0, "kd": 9.0},  # logit-standardization-KD: --kd-weight 9, CE weight 1
    "wsld": {"ce": 1.0, "wsld": 2.25},  # WSLD paper, section 5 (CIFAR-100): alpha = 2.25
    "dist": {"ce": 1.0, "dist": 2.0},  # DIST_KD dist_cifar.yaml: kd_loss_weight 2
}


# Keyword options of a recipe's loss terms where they differ from the terms' defaults:
# recipe -> term -> options (``{"kd+ls": {"kd": {...}}}``). Recipes not listed use the defaults.
METHOD_OPTIONS: dict[str, dict[str, dict]] = {
    # mdistiller configs/cifar100/dkd/wrn40_2_wrn_16_2.yaml (the paper profile's pair): beta 6
    # (its default, 8, is resnet32x4 -> resnet8x4's); alpha 1, T 4, warm-up 20 of 240 epochs
    "dkd": {"dkd": {"beta": 6.0}},
    # logit-standardization-KD tools/train.py with --logit-stand --base-temp 2 --kd-weight 9 on the
    # same config: alpha and beta multiplied by 9, T = base temperature 2
    "dkd+ls": {"dkd": {"alpha": 9.0, "beta": 54.0, "temperature": 2.0, "standardize": True}},
    "kd+ls": {"kd": {"temperature": 2.0, "standardize": True}},
    # WSLD (T = 4) and DIST (T = 4, beta = gamma = 1) use their terms' defaults
}


def method_options(method: str) -> dict[str, dict]:
    """The term options of a named recipe (a fresh copy; ``{}`` when it uses the defaults)."""
    method_weights(method)  # unknown names are an error here too
    return {term: dict(options) for term, options in METHOD_OPTIONS.get(method, {}).items()}


def method_weights(method: str, **overrides: float) -> dict[str, float]:
    """Loss weights of a named recipe (``"icd+kd"``), with per-term ``overrides`` (``kd=0.5``)."""
    try:
        weights = dict(METHOD_WEIGHTS[method])
    except KeyError:
        raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHOD_WEIGHTS)}") from None
    weights.update(overrides)
    return weights

