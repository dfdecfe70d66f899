"""Correlation congruence (Peng et al. 2019), Gaussian RBF kernel by its P-order Taylor series.

The pooled features go through linear heads to 128-d and are L2-normalised: z (n, 128). For unit
vectors exp(-gamma ||z_i - z_j||^2) = exp(-2 gamma) exp(2 gamma z_i . z_j), expanded to order P:
    C[i, j] = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (z_i . z_j)^p     their eq. 8-9, (n, n)
    loss = ||C_s - C_t||_F^2 / n^2                                          their eq. 6
gamma = 0.4 and P = 2 as in the paper. (RepDistiller's code runs a different, emailed variant.)
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def rbf_correlation(z: Tensor, gamma: float, order: int) -> Tensor:
    """(n, d) unit rows -> (n, n): the order-``order`` Taylor expansion of exp(-gamma ||z_i - z_j||^2)."""
    cosine = z @ z.T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * cosine.pow(p) for p in range(order + 1)
    )


@register("cc")
class CorrelationCongruence(Distiller):
    """CC on the pooled features; options ``feat_dim`` (128), ``gamma`` (0.4), ``order`` (P = 2)."""

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        feat_dim: int = 128,
        gamma: float = 0.4,
        order: int = 2,
    ):
        super().__init__()
        teacher_shapes = require_teacher("cc", teacher_shapes)
        if gamma <= 0 or order < 0:
            raise ValueError(f"cc: need gamma > 0 and order >= 0, got gamma={gamma}, order={order}")
        self.gamma, self.order = float(gamma), int(order)
        self.embed_s = nn.Linear(student_shapes.pooled_dim, feat_dim)
        self.embed_t = nn.Linear(teacher_shapes.pooled_dim, feat_dim)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("cc", teacher)
        check_features("cc", student.pooled, teacher.pooled)
        z_s = F.normalize(self.embed_s(student.pooled), dim=1)
        z_t = F.normalize(self.embed_t(teacher.pooled), dim=1)
        c_s = rbf_correlation(z_s, self.gamma, self.order)
        c_t = rbf_correlation(z_t, self.gamma, self.order)
        n = z_s.shape[0]
        return {"cc": (c_s - c_t).pow(2).sum() / (n * n)}
