"""Neuron selectivity transfer (Huang and Wang 2017), polynomial kernel.

Each stage output (stem left out) is read as c samples of a "neuron" over the h*w positions:
f (n, c, h*w), each row L2-normalised. With k(a, b) = (a . b)^2 (their eq. 10, d = 2, c = 0),
    MMD^2 = mean k(f_t, f_t) + mean k(f_s, f_s) - 2 mean k(f_s, f_t)     their eq. 7
over all channel pairs of each image, then over images; summed over stages. The larger map is
average-pooled to the smaller one's size when they differ.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import match_spatial, require_outputs, require_teacher, sum_over_stages
from icd_lib.outputs import ModelOutput, ModelShapes


def polynomial_kernel_mean(a: Tensor, b: Tensor) -> Tensor:
    """(n, c_a, m), (n, c_b, m) -> mean over n, c_a, c_b of (a_i . b_j)^2, a scalar."""
    return (a @ b.transpose(1, 2)).pow(2).mean()


def selectivity_mmd(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Squared MMD between student and teacher channel distributions of one stage, a scalar."""
    f_s, f_t = match_spatial(f_s, f_t)
    f_s = F.normalize(f_s.flatten(2), dim=2)
    f_t = F.normalize(f_t.flatten(2), dim=2)
    return polynomial_kernel_mean(f_t, f_t) + polynomial_kernel_mean(f_s, f_s) - 2 * polynomial_kernel_mean(f_s, f_t)


@register("nst")
class NeuronSelectivityTransfer(Distiller):
    """Sum over stages of the polynomial-kernel MMD."""

    def __init__(self, student_shapes: ModelShapes, teacher_shapes: ModelShapes | None, num_data: int | None = None):
        super().__init__()
        require_teacher("nst", teacher_shapes)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("nst", teacher)
        return {"nst": sum_over_stages("nst", student, teacher, selectivity_mmd)}
