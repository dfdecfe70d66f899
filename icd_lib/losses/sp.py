"""Similarity-preserving KD (Tung and Mori 2019), on the last stage output.

With F_s (n, c_s*h_s*w_s) and F_t (n, c_t*h_t*w_t) the flattened maps:
    G = row_normalise(F @ F.T)                      (n, n), their eq. 2-3
    loss = ||G_s - G_t||_F^2 / n^2                  their eq. 4
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def similarity_matrix(features: Tensor) -> Tensor:
    """(n, ...) -> (n, n): the batch's Gram matrix with each row scaled to unit L2 norm."""
    flat = features.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


@register("sp")
class SimilarityPreserving(Distiller):
    """SP on ``features[-1]`` (the last stage output)."""

    def __init__(self, student_shapes: ModelShapes, teacher_shapes: ModelShapes | None, num_data: int | None = None):
        super().__init__()
        require_teacher("sp", teacher_shapes)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("sp", teacher)
        f_s, f_t = student.features[-1], teacher.features[-1]
        check_features("sp", f_s, f_t)
        n = f_s.shape[0]
        return {"sp": (similarity_matrix(f_s) - similarity_matrix(f_t)).pow(2).sum() / (n * n)}
