"""DIST (Huang et al., NeurIPS 2022): match the correlations of the predictions, not their values.

Huang, You, Wang, Qian and Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022
(arXiv:2205.10536); reference code: github.com/hunto/DIST_KD, whose classification code is the
submodule github.com/hunto/image_classification_sota: ``lib/models/losses/dist_kd.py`` (the loss),
``lib/models/losses/kd_loss.py`` (``kd: dist_t4`` builds DIST(beta=1, gamma=1, tau=4)) and
``configs/strategies/distill/dist_cifar.yaml`` (CIFAR-100: CE weight 1, DIST weight 2).

With Y^S, Y^T the (n, k) matrices of softmax(z / T) and rho the Pearson correlation
(cosine similarity of the centred vectors, with 1e-8 added to the product of norms as there):

- inter-class relation: 1 - mean_i rho(Y^S[i, :], Y^T[i, :])  (each sample's class ranking);
- intra-class relation: 1 - mean_c rho(Y^S[:, c], Y^T[:, c])  (each class across the batch);

    dist = T^2 * (beta * inter + gamma * intra).

Defaults are the CIFAR-100 ones of the reference code: beta = gamma = 1, T = 4, and the recipe
``"dist"`` in ``icd_lib.config`` weights the term by 2 ({"ce": 1, "dist": 2}), the same objective
as beta = gamma = 2 with weight 1. (The code's ImageNet baseline, ``kd: dist``, uses T = 1.)
The intra-class term needs a batch of at least 2 samples. The teacher's logits are detached.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import require_teacher
from icd_lib.losses.dkd import check_num_classes, teacher_logit_pair
from icd_lib.outputs import ModelOutput, ModelShapes

PEARSON_EPS = 1e-8


def pearson_rows(a: Tensor, b: Tensor, eps: float = PEARSON_EPS) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``, (n, d) -> (n,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(y_s: Tensor, y_t: Tensor) -> Tensor:
    """1 - mean over samples of the correlation of their class probability vectors."""
    return 1 - pearson_rows(y_s, y_t).mean()


def intra_class_relation(y_s: Tensor, y_t: Tensor) -> Tensor:
    """1 - mean over classes of the correlation of their probabilities across the batch."""
    return 1 - pearson_rows(y_s.t(), y_t.t()).mean()


@register("dist")
class DIST(Distiller):
    """T^2 * (beta * inter-class + gamma * intra-class relation loss); logits (n, k), n >= 2.

    Terms: "dist"; diagnostics "dist.inter" and "dist.intra" (each with the T^2 factor).
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 4.0,
    ):
        super().__init__()
        teacher_shapes = require_teacher("dist", teacher_shapes)
        check_num_classes("dist", student_shapes, teacher_shapes)
        if temperature <= 0:
            raise ValueError(f"dist: temperature must be > 0, got {temperature}")
        if beta < 0 or gamma < 0:
            raise ValueError(f"dist: beta and gamma must be >= 0, got beta={beta}, gamma={gamma}")
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.temperature = float(temperature)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        z_s, z_t = teacher_logit_pair("dist", student, teacher)
        if z_s.shape[0] < 2:
            raise ValueError(
                f"dist: the intra-class relation correlates each class across the batch and needs a batch of "
                f"at least 2 images, got {z_s.shape[0]}"
            )
        t = self.temperature
        y_s, y_t = F.softmax(z_s / t, dim=1), F.softmax(z_t / t, dim=1)
        inter = t * t * inter_class_relation(y_s, y_t)
        intra = t * t * intra_class_relation(y_s, y_t)
        return {
            "dist": self.beta * inter + self.gamma * intra,
            "dist.inter": inter.detach(),
            "dist.intra": intra.detach(),
        }
