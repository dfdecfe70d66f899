"""Probabilistic knowledge transfer (Passalis and Tefas 2018), cosine kernel, on pooled features.

With cosine similarities K[i, j] of the batch (n, n), mapped to [0, 1] by (K + 1) / 2 and
normalised per row into conditional probabilities p(j | i) (their eq. 11-13):
    loss = mean over (i, j) of p_t(j|i) log(p_t(j|i) / p_s(j|i))          their eq. 6, averaged as RepDistiller
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes

EPS = 1e-7


def cosine_conditionals(features: Tensor) -> Tensor:
    """(n, d) -> (n, n): p(j | i) proportional to (cos(x_i, x_j) + 1) / 2, rows summing to 1."""
    unit = F.normalize(features, dim=1, eps=EPS)
    kernel = (unit @ unit.T + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)


@register("pkt")
class PKT(Distiller):
    """PKT on the pooled features (no parameters)."""

    def __init__(self, student_shapes: ModelShapes, teacher_shapes: ModelShapes | None, num_data: int | None = None):
        super().__init__()
        require_teacher("pkt", teacher_shapes)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("pkt", teacher)
        check_features("pkt", student.pooled, teacher.pooled, min_batch=2)
        p_s = cosine_conditionals(student.pooled)
        p_t = cosine_conditionals(teacher.pooled)
        return {"pkt": torch.mean(p_t * torch.log((p_t + EPS) / (p_s + EPS)))}
