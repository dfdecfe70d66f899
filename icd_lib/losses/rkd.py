"""Relational knowledge distillation (Park et al. 2019), distance and angle, on pooled features.

    psi_D(i, j) = ||x_i - x_j|| / mu,  mu = mean distance over pairs i != j       their eq. 5
    psi_A(i, j, k) = cos of the angle at x_i between x_j and x_k                             their eq. 7
    loss = w_d * mean smooth_l1(psi_D^s - psi_D^t) + w_a * mean smooth_l1(psi_A^s - psi_A^t)
with w_d = 25 and w_a = 50 (the paper's weights, inside the term as in RepDistiller).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def normalised_distances(x: Tensor) -> Tensor:
    """(n, d) -> (n, n): pairwise Euclidean distances divided by their mean over pairs i != j."""
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(dim=2)
    off_diagonal = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    # sqrt has an infinite slope at 0: take it on the clamped values and zero the diagonal after
    distances = squared.clamp(min=1e-12).sqrt() * off_diagonal
    return distances / distances[off_diagonal].mean()


def angles(x: Tensor) -> Tensor:
    """(n, d) -> (n, n, n): [i, j, k] = cos of the angle between x_j - x_i and x_k - x_i (0 if j or k is i)."""
    directions = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)
    return directions @ directions.transpose(1, 2)


@register("rkd")
class RKD(Distiller):
    """RKD-DA on the pooled features; options ``distance_weight`` (25), ``angle_weight`` (50)."""

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
    ):
        super().__init__()
        require_teacher("rkd", teacher_shapes)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("rkd", teacher)
        f_s, f_t = student.pooled, teacher.pooled
        check_features("rkd", f_s, f_t, min_batch=2)
        f_t = f_t.detach()
        distance = F.smooth_l1_loss(normalised_distances(f_s), normalised_distances(f_t))
        angle = F.smooth_l1_loss(angles(f_s), angles(f_t))
        return {
            "rkd": self.distance_weight * distance + self.angle_weight * angle,
            "rkd.distance": distance.detach(),
            "rkd.angle": angle.detach(),
        }
