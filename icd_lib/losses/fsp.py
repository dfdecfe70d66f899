"""FSP, the flow of solution procedure (Yim et al., "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning", CVPR 2017), as RepDistiller runs it
(Tian et al. 2020, ``distiller_zoo/FSP.py``, ``helper/pretrain.py``, ``train_student.py``).

The FSP matrix of two consecutive feature maps F1 (n, c1, h, w) and F2 (n, c2, h, w) of one image
is the Gram matrix between their channels:

    G[j, i] = (1 / (h w)) sum_{s, t} F1[i, s, t] F2[j, s, t]          (c2, c1)

with the larger map average-pooled to the smaller one's size first (RepDistiller). Every
consecutive pair of ``features`` (stem first, so stem -> stage 1 -> stage 2 -> stage 3; the
reference code's ``feat[:-1]``) gives one matrix, and

    loss = sum over pairs of mean over (n, c2, c1) of (G_s - G_t)^2

(the paper's L_FSP with equal weights lambda_i; RepDistiller averages each squared norm over the entries
as well as the batch). The matrices of student and teacher must have equal shapes, so the two
models need the same channel counts at every feature map (a ValueError otherwise).

The method is two-staged, as in the paper (a first stage minimises L_FSP, a second trains on the
task) and in RepDistiller: an initialisation stage trains the student's feature layers
(everything but the classifier) with this loss alone, for ``init_fraction`` of the schedule (30
of 240 epochs, 1/8) at the run's learning rate; then the main epochs train with cross-entropy.
RepDistiller's main loop sets FSP's loss to 0 (``loss_kd = 0`` for ``fsp`` in
``helper/loops.py``; the ``-b 50`` of its scripts multiplies that 0), so the recipe's weight for
``fsp`` is 0 and the term is a logged diagnostic in the main epochs.
"""
from __future__ import annotations

from torch import Tensor, nn

from icd_lib.losses.base import Distiller, InitStage, feature_modules, register
from icd_lib.losses.common import check_features, match_spatial, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def fsp_matrix(bottom: Tensor, top: Tensor) -> Tensor:
    """(n, c1, h1, w1), (n, c2, h2, w2) -> (n, c2, c1): channel Gram matrix averaged over positions."""
    bottom, top = match_spatial(bottom, top)
    return top.flatten(2) @ bottom.flatten(2).transpose(1, 2) / bottom.shape[2] / bottom.shape[3]


@register("fsp")
class FSP(Distiller):
    """Squared distance of the FSP matrices of consecutive feature maps; an init stage trains with it.

    ``init_fraction``: the stage's length as a fraction of the main epochs (RepDistiller 30/240).
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        init_fraction: float = 1 / 8,
    ):
        super().__init__()
        teacher_shapes = require_teacher("fsp", teacher_shapes)
        s_channels = [shape[0] for shape in student_shapes.feature_shapes]
        t_channels = [shape[0] for shape in teacher_shapes.feature_shapes]
        if len(s_channels) < 2 or s_channels != t_channels:
            raise ValueError(
                f"fsp compares the FSP matrices of consecutive feature maps, so student and teacher need the same "
                f"channel counts at each of at least two maps; got student {s_channels}, teacher {t_channels} "
                "(choose a pair with equal widths, e.g. resnet8 from resnet20, or wrn_16_2 from wrn_40_2)"
            )
        self.num_maps = len(s_channels)
        self.init_fraction = float(init_fraction)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("fsp", teacher)
        return {"fsp": self.fsp_loss(student, teacher)}

    def fsp_loss(self, student: ModelOutput, teacher: ModelOutput) -> Tensor:
        if len(student.features) != self.num_maps or len(teacher.features) != self.num_maps:
            raise ValueError(
                f"fsp was built for {self.num_maps} feature maps but got {len(student.features)} (student) and "
                f"{len(teacher.features)} (teacher); build it with the ModelShapes of the models you pass"
            )
        for f_s, f_t in zip(student.features, teacher.features):
            check_features("fsp", f_s, f_t)
        total = 0.0
        for k in range(self.num_maps - 1):
            g_s = fsp_matrix(student.features[k], student.features[k + 1])
            g_t = fsp_matrix(teacher.features[k], teacher.features[k + 1])
            if g_s.shape != g_t.shape:
                raise ValueError(
                    f"fsp: the FSP matrices of maps {k} -> {k + 1} differ in shape (student {tuple(g_s.shape[1:])}, "
                    f"teacher {tuple(g_t.shape[1:])}); pass the models the loss was built for"
                )
            total = total + (g_s - g_t).pow(2).mean()
        return total

    def init_stage(self, student: nn.Module) -> InitStage | None:
        """The student's feature layers, trained with the FSP loss alone (RepDistiller's ``init()``)."""
        return InitStage(
            modules=feature_modules("fsp", student),
            loss=lambda s, t: {"fsp.init": self.fsp_loss(s, require_outputs("fsp", t))},
            fraction=self.init_fraction,
        )
