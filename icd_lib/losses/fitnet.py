"""FitNets (Romero et al. 2015): regress the teacher's hint layer from the student's guided layer.

Loss (their eq. 3, averaged as in RepDistiller): mean over all entries of (r(u_s) - u_t)^2, where
u_s (n, c_s, h_s, w_s) and u_t (n, c_t, h_t, w_t) are the middle stage outputs (``features[2]``
for (stem, stage1, stage2, stage3)) and r a trainable conv regressor to the teacher's shape.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def hint_regressor(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Sequential:
    """conv-BN-ReLU mapping a (c_s, h_s, w_s) map to (c_t, h_t, w_t).

    Stride-2 3x3 conv when the student map is twice as large, stride-2 transposed conv when half as
    large, else a valid conv whose kernel (1 + h_s - h_t, 1 + w_s - w_t) shrinks h_s to h_t
    (1x1 when the sizes agree).
    """
    (c_s, h_s, w_s), (c_t, h_t, w_t) = student_shape, teacher_shape
    if (h_s, w_s) == (2 * h_t, 2 * w_t):
        conv = nn.Conv2d(c_s, c_t, 3, stride=2, padding=1)
    elif (2 * h_s, 2 * w_s) == (h_t, w_t):
        conv = nn.ConvTranspose2d(c_s, c_t, 4, stride=2, padding=1)
    elif h_s >= h_t and w_s >= w_t:
        conv = nn.Conv2d(c_s, c_t, (1 + h_s - h_t, 1 + w_s - w_t))
    else:
        raise ValueError(
            f"fitnet: cannot regress a student map of size {h_s}x{w_s} to a teacher map of {h_t}x{w_t}; "
            "choose another hint_layer"
        )
    return nn.Sequential(conv, nn.BatchNorm2d(c_t), nn.ReLU())


@register("fitnet")
class FitNet(Distiller):
    """Hint loss on ``features[hint_layer]`` (default: the middle one, len(features) // 2)."""

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        hint_layer: int | None = None,
    ):
        super().__init__()
        teacher_shapes = require_teacher("fitnet", teacher_shapes)
        count = min(len(student_shapes.feature_shapes), len(teacher_shapes.feature_shapes))
        self.hint_layer = count // 2 if hint_layer is None else hint_layer
        if not 0 <= self.hint_layer < count:
            raise ValueError(f"fitnet: hint_layer must be in [0, {count}), got {hint_layer}")
        self.regressor = hint_regressor(
            student_shapes.feature_shapes[self.hint_layer], teacher_shapes.feature_shapes[self.hint_layer]
        )

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("fitnet", teacher)
        guided, hint = student.features[self.hint_layer], teacher.features[self.hint_layer]
        check_features("fitnet", guided, hint)
        return {"fitnet": F.mse_loss(self.regressor(guided), hint)}
