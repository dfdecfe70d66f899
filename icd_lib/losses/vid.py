"""Variational information distillation (Ahn et al. 2019), one Gaussian per stage.

For each stage output (stem left out), a regressor mu (three 1x1 convs, ReLU between, width c_t)
predicts the teacher map from the student's, with a learned per-channel variance
sigma_c^2 = softplus(alpha_c) + eps (initialised to 5). The loss is the Gaussian negative
log-likelihood without its constant (their eq. 2 and 5):
    mean over (n, c, h, w) of 1/2 [ (t - mu(s))^2 / sigma_c^2 + log sigma_c^2 ]
summed over stages. The larger map is average-pooled to the smaller one's size when they differ.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import match_spatial, require_outputs, require_teacher, sum_over_stages
from icd_lib.outputs import ModelOutput, ModelShapes


class VariationalStage(nn.Module):
    """-log q(t | s) up to a constant for one stage: s (n, c_s, h, w), t (n, c_t, h, w) -> scalar."""

    def __init__(self, s_channels: int, t_channels: int, init_variance: float = 5.0, eps: float = 1e-5):
        super().__init__()
        if init_variance <= eps:
            raise ValueError(f"vid: init_variance must exceed eps={eps}, got {init_variance}")
        self.mean = nn.Sequential(
            nn.Conv2d(s_channels, t_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(t_channels, t_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(t_channels, t_channels, 1, bias=False),
        )
        self.eps = eps
        # softplus^-1(init_variance - eps), so that the initial variance is exactly init_variance
        inverse_softplus = math.log(math.expm1(init_variance - eps))
        self.variance_logit = nn.Parameter(torch.full((t_channels,), inverse_softplus))

    def variance(self) -> Tensor:
        """(c_t,) sigma^2 > 0."""
        return F.softplus(self.variance_logit) + self.eps

    def forward(self, s: Tensor, t: Tensor) -> Tensor:
        s, t = match_spatial(s, t)
        variance = self.variance().view(1, -1, 1, 1)
        return (0.5 * ((self.mean(s) - t).pow(2) / variance + variance.log())).mean()


@register("vid")
class VID(Distiller):
    """Sum over stages of ``VariationalStage``; option ``init_variance`` (5)."""

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        init_variance: float = 5.0,
    ):
        super().__init__()
        teacher_shapes = require_teacher("vid", teacher_shapes)
        s_stages, t_stages = student_shapes.feature_shapes[1:], teacher_shapes.feature_shapes[1:]
        if len(s_stages) != len(t_stages):
            raise ValueError(f"vid pairs stages, but the student has {len(s_stages)} and the teacher {len(t_stages)}")
        self.stages = nn.ModuleList(
            VariationalStage(s[0], t[0], init_variance) for s, t in zip(s_stages, t_stages)
        )

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("vid", teacher)
        return {"vid": sum_over_stages("vid", student, teacher, self.stages)}
