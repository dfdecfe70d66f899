"""The two logit terms: cross-entropy with the labels ("ce") and Hinton's KD ("kd").

They are the first two terms of the paper's eq. 13: L_sup and L_distill.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, check_finite, require_outputs, require_teacher
from icd_lib.losses.ls import standardize as z_score
from icd_lib.outputs import ModelOutput, ModelShapes


@register("ce")
class CrossEntropy(Distiller):
    """L_sup of eq. 13: mean_i -log softmax(student logits_i)[y_i]; logits (n, k), labels (n,) int64."""

    needs_teacher = False

    def __init__(
        self, student_shapes: ModelShapes, teacher_shapes: ModelShapes | None = None, num_data: int | None = None
    ):
        super().__init__()

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        logits = student.logits
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"ce: labels must be class indices of shape ({logits.shape[0]},) and an integer dtype, "
                f"got shape {tuple(labels.shape)} and {labels.dtype}"
            )
        check_finite("ce: the student logits", logits)
        return {"ce": F.cross_entropy(logits, labels)}


@register("kd")
class KD(Distiller):
    """Hinton et al. (2015): T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T)), logits (n, k).

    L_distill of eq. 13, with T = ``temperature`` = 4 as in the paper; the T^2 factor keeps the
    gradient's size independent of T. ``standardize=True`` z-scores both logit vectors first
    (Sun et al., 2024; ``icd_lib.losses.ls``), T then being the paper's base temperature.
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        temperature: float = 4.0,
        standardize: bool = False,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd: temperature must be > 0, got {temperature}")
        require_teacher("kd", teacher_shapes)
        self.temperature = float(temperature)
        self.standardize = bool(standardize)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("kd", teacher)
        check_features("kd", student.logits, teacher.logits, what="logits")
        if student.logits.shape != teacher.logits.shape:
            raise ValueError(
                f"kd: student and teacher logits differ in shape ({tuple(student.logits.shape)} vs "
                f"{tuple(teacher.logits.shape)}); both models must predict the same classes"
            )
        t = self.temperature
        z_s, z_t = student.logits, teacher.logits
        if self.standardize:
            z_s, z_t = z_score(z_s), z_score(z_t)
        log_p_s = F.log_softmax(z_s / t, dim=1)
        log_p_t = F.log_softmax(z_t / t, dim=1)
        return {"kd": F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t}
