"""Attention transfer (Zagoruyko and Komodakis 2017), activation-based, p = 2.

For each stage output (stem left out) of student and teacher, (n, c, h, w):
    a(f) = normalise(mean_c f^p), flattened to (n, h*w)            their eq. 2, unit L2 norm per image
    loss = sum over stages of mean over (n, h*w) of (a(f_s) - a(f_t))^2   their eq. 2, as RepDistiller
The larger map is average-pooled to the smaller one's size when they differ.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import match_spatial, require_outputs, require_teacher, sum_over_stages
from icd_lib.outputs import ModelOutput, ModelShapes


def attention_map(features: Tensor, p: float = 2.0) -> Tensor:
    """(n, c, h, w) -> (n, h*w): channel mean of f^p, each row scaled to unit L2 norm."""
    return F.normalize(features.pow(p).mean(dim=1).flatten(1), dim=1)


@register("at")
class AttentionTransfer(Distiller):
    """Sum over stages of the attention-map distance; option ``p`` (default 2)."""

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        p: float = 2.0,
    ):
        super().__init__()
        require_teacher("at", teacher_shapes)
        self.p = float(p)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("at", teacher)
        return {"at": sum_over_stages("at", student, teacher, self.stage_distance)}

    def stage_distance(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        """Mean squared difference of the attention maps of one stage, a scalar."""
        f_s, f_t = match_spatial(f_s, f_t)
        return (attention_map(f_s, self.p) - attention_map(f_t, self.p)).pow(2).mean()
