"""Decoupled Knowledge Distillation (DKD; Zhao et al., CVPR 2022): KD split into target and non-target parts.

Zhao, Cui, Song, Qiu and Liang, "Decoupled Knowledge Distillation", CVPR 2022 (arXiv:2203.08679);
reference code: github.com/megvii-research/mdistiller, ``mdistiller/distillers/DKD.py`` (the loss),
``mdistiller/engine/cfg.py`` (defaults) and ``configs/cifar100/dkd/*.yaml`` (per-pair beta).

With p = softmax(z / T) over the k classes and t the label of a sample:

- binary probabilities b = (p_t, 1 - p_t): target class against all the others;
- p_hat = softmax over the k - 1 non-target logits only (the non-target distribution);
- TCKD = KL(b^T || b^S) ("target class KD"), NCKD = KL(p_hat^T || p_hat^S) ("non-target class KD").

The paper rewrites Hinton's KD exactly as KD = TCKD + (1 - p_t^T) NCKD (per sample): NCKD is
suppressed where the teacher is confident. DKD drops that coupling:

    dkd = w(epoch) * T^2 * mean_i (alpha * TCKD_i + beta * NCKD_i)

so with alpha = beta = 1 it is KD plus mean_i p_t^T NCKD_i, not KD. Defaults are mdistiller's
CIFAR-100 ones (``cfg.py``): alpha = 1, beta = 8, T = 4, CE weight 1 (the recipe ``"dkd"`` in
``icd_lib.config``). mdistiller's per-pair configs change beta: 8 (its default; resnet32x4 -> resnet8x4
and the ShuffleNet/MobileNet students of resnet32x4, ResNet50, WRN-40-2), 6 (WRN-40-2 -> WRN-16-2 /
WRN-40-1, VGG13 -> VGG8 / MobileNetV2), 2 (resnet56 -> resnet20, resnet110 -> resnet32); the
``"dkd"`` recipe uses 6, the config of this book's CIFAR-100 pair WRN-40-2 -> WRN-16-2.

Warm-up: mdistiller multiplies the loss by min(epoch / 20, 1) with epochs counted from 1 of 240.
Here the trainer calls ``set_progress(epoch, total_epochs)`` with epochs counted from 0, and the
factor is w = min((epoch + 1) / (warmup_fraction * total_epochs), 1) with ``warmup_fraction`` =
20 / 240: the same ramp for 240 epochs. The factor changes once per epoch, so a schedule shorter
than 1 / warmup_fraction epochs (12 at the default) has w = 1 from its first epoch: no warm-up
at all (the book's 8-epoch runs also use ``dkd.warmup_fraction=0.5`` for that reason). Until
``set_progress`` is called (unit tests, evaluation outside the trainer) w = 1; ``warmup_fraction``
= 0 switches the warm-up off.

Differences from the reference code, none changing the value beyond rounding: the non-target
softmax drops the target logit instead of subtracting 1000 from it, and the binary log-probabilities
come from log-sum-exps rather than ``log`` of summed probabilities (finite even where p_t underflows).
The teacher's logits are detached (the teacher is fixed). ``standardize=True`` z-scores both logit
vectors first (logit standardisation, ``icd_lib.losses.ls``; recipe ``"dkd+ls"``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, may_synchronise, require_outputs, require_teacher
from icd_lib.losses.ls import standardize as z_score
from icd_lib.outputs import ModelOutput, ModelShapes

# mdistiller: CFG.DKD.WARMUP = 20 epochs of CFG.SOLVER.EPOCHS = 240
DEFAULT_WARMUP_FRACTION = 20 / 240


# ----------------------------------------------------------- checks shared by the logit methods


def check_num_classes(name: str, student_shapes: ModelShapes, teacher_shapes: ModelShapes) -> None:
    """ValueError unless both models predict the same number of classes (checked when building)."""
    if student_shapes.num_classes != teacher_shapes.num_classes:
        raise ValueError(
            f"{name} compares the two models' class probabilities, but the student predicts "
            f"{student_shapes.num_classes} classes and the teacher {teacher_shapes.num_classes}"
        )


def check_logit_pair(name: str, student_logits: Tensor, teacher_logits: Tensor, min_classes: int = 2) -> None:
    """Both logits (n, k) with the same n and k >= ``min_classes``, floating point and finite."""
    check_features(name, student_logits, teacher_logits, what="logits")
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"{name}: student and teacher logits must both have shape (n, k) with the same k, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}; both models must predict "
            "the same classes"
        )
    if student_logits.shape[1] < min_classes:
        raise ValueError(f"{name} needs logits over at least {min_classes} classes, got {student_logits.shape[1]}")


def teacher_logit_pair(name: str, student: ModelOutput, teacher: ModelOutput | None,
                       labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(student logits, detached teacher logits), both (n, k), checked; ``labels`` too when given."""
    teacher = require_outputs(name, teacher)
    z_s, z_t = student.logits, teacher.logits.detach()
    check_logit_pair(name, z_s, z_t)
    if labels is not None:
        check_class_labels(name, labels, z_s)
    return z_s, z_t


def check_class_labels(name: str, labels: Tensor, logits: Tensor) -> None:
    """Labels must be (n,) integer class indices in [0, k) for (n, k) logits (range checked on CPU)."""
    n, k = logits.shape
    if (
        not isinstance(labels, Tensor)
        or labels.dim() != 1
        or labels.shape[0] != n
        or labels.is_floating_point()
        or labels.dtype == torch.bool
    ):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        dtype = labels.dtype if isinstance(labels, Tensor) else None
        raise ValueError(
            f"{name}: labels must be class indices of shape ({n},) and an integer dtype, got {shape} and {dtype}"
        )
    if n and may_synchronise(labels) and not bool(((labels >= 0) & (labels < k)).all()):
        raise ValueError(
            f"{name}: labels must lie in [0, {k}) for logits over {k} classes, got values from "
            f"{int(labels.min())} to {int(labels.max())}"
        )


# ----------------------------------------------------------------------------------- the loss


def dkd_parts(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Per-sample (TCKD_i, NCKD_i), each (n,), at temperature T, without the T^2 factor."""
    n, k = student_logits.shape
    target = labels[:, None] == torch.arange(k, device=labels.device)  # (n, k) one-hot, bool
    # the k - 1 non-target columns of each row, in order (a stable sort puts the target last);
    # gathered rather than boolean-indexed, which would synchronise a GPU
    non_target = torch.sort(target.to(torch.int8), dim=1, stable=True).indices[:, : k - 1]
    parts = []
    for z in (student_logits / temperature, teacher_logits / temperature):
        log_all = torch.logsumexp(z, dim=1)
        log_p_target = z.gather(1, labels[:, None])[:, 0] - log_all
        log_p_rest = torch.logsumexp(z.masked_fill(target, float("-inf")), dim=1) - log_all
        log_binary = torch.stack([log_p_target, log_p_rest], dim=1)  # log (p_t, 1 - p_t)
        log_non_target = F.log_softmax(z.gather(1, non_target), dim=1)  # log p_hat
        parts.append((log_binary, log_non_target))
    (binary_s, rest_s), (binary_t, rest_t) = parts
    tckd = F.kl_div(binary_s, binary_t, reduction="none", log_target=True).sum(1)
    nckd = F.kl_div(rest_s, rest_t, reduction="none", log_target=True).sum(1)
    return tckd, nckd


@register("dkd")
class DKD(Distiller):
    """Decoupled KD: w * T^2 * mean_i (alpha TCKD_i + beta NCKD_i); logits (n, k), labels (n,).

    Terms: "dkd"; diagnostics "dkd.tckd" and "dkd.nckd" (T^2 times the batch means, before alpha,
    beta and the warm-up) and "dkd.warmup" (the factor w).
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_fraction: float = DEFAULT_WARMUP_FRACTION,
        standardize: bool = False,
    ):
        super().__init__()
        teacher_shapes = require_teacher("dkd", teacher_shapes)
        check_num_classes("dkd", student_shapes, teacher_shapes)
        if temperature <= 0:
            raise ValueError(f"dkd: temperature must be > 0, got {temperature}")
        if alpha < 0 or beta < 0:
            raise ValueError(f"dkd: alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if not 0 <= warmup_fraction <= 1:
            raise ValueError(f"dkd: warmup_fraction must lie in [0, 1], got {warmup_fraction}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = float(temperature)
        self.warmup_fraction = float(warmup_fraction)
        self.standardize = bool(standardize)
        self.progress: tuple[int, int] | None = None

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Epoch ``epoch`` (from 0) of ``total_epochs`` starts: sets the warm-up factor."""
        if total_epochs < 1 or not 0 <= epoch < total_epochs:
            raise ValueError(f"dkd: epoch must lie in [0, total_epochs), got epoch={epoch}, total_epochs={total_epochs}")
        self.progress = (int(epoch), int(total_epochs))

    def warmup_factor(self) -> float:
        """min((epoch + 1) / (warmup_fraction * total_epochs), 1); 1 before any ``set_progress``."""
        if self.progress is None or self.warmup_fraction == 0:
            return 1.0
        epoch, total = self.progress
        return min((epoch + 1) / (self.warmup_fraction * total), 1.0)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        z_s, z_t = teacher_logit_pair("dkd", student, teacher, labels)
        if self.standardize:
            z_s, z_t = z_score(z_s), z_score(z_t)
        tckd_i, nckd_i = dkd_parts(z_s, z_t, labels, self.temperature)
        scale = self.temperature**2
        tckd, nckd = scale * tckd_i.mean(), scale * nckd_i.mean()
        w = self.warmup_factor()
        return {
            "dkd": w * (self.alpha * tckd + self.beta * nckd),
            "dkd.tckd": tckd.detach(),
            "dkd.nckd": nckd.detach(),
            "dkd.warmup": torch.tensor(w, dtype=tckd.dtype, device=tckd.device),
        }
