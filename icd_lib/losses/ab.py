"""Activation boundaries (Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries
Formed by Hidden Neurons", AAAI 2019), as RepDistiller runs it (Tian et al. 2020,
``distiller_zoo/AB.py``, ``models/util.py`` ``Connector``, ``helper/pretrain.py``).

A neuron's activation boundary is where its pre-activation changes sign. For each stage output
(stem left out; the reference code's ``feat[1:-1]``), a connector r maps the student's map to the
teacher's shape and the student is pushed to the teacher's side of every boundary with margin m
(the paper's alternative loss, a squared hinge):

    l_k = (1/n) sum over entries of  relu(m + r(s))^2 * [t <= 0]  +  relu(m - r(s))^2 * [t > 0]
    loss = (3 / 1000) * sum_k 2^(k - K + 1) * l_k        k = 0 .. K-1, the deepest stage weighs 1

(the layer weights 2^(k-K+1), the division by the batch size and the factor 3/1000 are
RepDistiller's; m = 1). The loss is zero exactly when every connector output lies beyond the
margin on the teacher's side: r(s) >= m where t > 0 and r(s) <= -m where t <= 0.

Features. RepDistiller reads pre-activation maps (``preact=True``). This library's models return
the maps after the stage's ReLU (``icd_lib.models``), which changes nothing on the teacher's
side (relu(t) > 0 exactly where t > 0), but a post-ReLU student map cannot be negative. So every
stage gets a trainable connector, conv + BatchNorm (as in the authors' code, bhheo/AB_distillation,
where it is a 1x1 conv + BN): a 1x1 conv where the sizes agree, else FitNet's strided or
transposed conv (RepDistiller's ``ConvReg`` without ReLU, the connector it uses when shapes differ).
On the pre-activation WRNs the maps are what RepDistiller reads.

Two stages, as in the paper (the transfer initialises the student, which then trains on the task)
and RepDistiller: an initialisation stage trains the connectors and the student's feature layers
(everything but the classifier) with this loss alone, for ``init_fraction`` of the schedule (30
of 240 epochs, 1/8) at the run's learning rate; afterwards the connectors are frozen (left out of
the optimizer, in eval mode) and the main epochs train with cross-entropy: RepDistiller's main
loop sets AB's loss to 0 (``loss_kd = 0`` for ``abound`` in ``helper/loops.py``; the ``-b 1`` of
its scripts multiplies that 0), so the recipe's weight for ``ab`` is 0 and the term is a logged
diagnostic of how well the boundaries survive.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, InitStage, feature_modules, register
from icd_lib.losses.common import check_features, paired_stages, require_outputs, require_teacher
from icd_lib.losses.fitnet import hint_regressor
from icd_lib.outputs import ModelOutput, ModelShapes


def boundary_loss(source: Tensor, target: Tensor, margin: float) -> Tensor:
    """Sum over all entries of the squared hinge that puts ``source`` on ``target``'s side of 0 by ``margin``."""
    active = target > 0
    return torch.where(active, (margin - source).relu().pow(2), (margin + source).relu().pow(2)).sum()


def connector(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Sequential:
    """conv + BN from a (c_s, h_s, w_s) map to (c_t, h_t, w_t) (FitNet's regressor without its ReLU)."""
    try:
        conv, bn, _ = hint_regressor(student_shape, teacher_shape)
    except ValueError:
        raise ValueError(
            f"ab: cannot connect a student map of shape {tuple(student_shape)} to a teacher map of shape "
            f"{tuple(teacher_shape)} (the student map must be at least half the teacher's size)"
        ) from None
    return nn.Sequential(conv, bn)


@register("ab")
class ActivationBoundaries(Distiller):
    """AB's margin loss on every stage output, through trainable connectors; an init stage trains with it.

    Options: ``margin`` (m, default 1), ``init_fraction`` (the stage's length as a fraction of
    the main epochs, RepDistiller 30/240).
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        margin: float = 1.0,
        init_fraction: float = 1 / 8,
    ):
        super().__init__()
        teacher_shapes = require_teacher("ab", teacher_shapes)
        s_shapes, t_shapes = student_shapes.feature_shapes[1:], teacher_shapes.feature_shapes[1:]
        if len(s_shapes) != len(t_shapes) or not s_shapes:
            raise ValueError(
                f"ab pairs the stage outputs of both models, but the student has {len(s_shapes)} stages after the "
                f"stem and the teacher {len(t_shapes)}"
            )
        if not margin > 0:
            raise ValueError(f"ab: margin must be positive, got {margin}")
        self.connectors = nn.ModuleList(connector(s, t) for s, t in zip(s_shapes, t_shapes))
        self.shapes = tuple((tuple(s), tuple(t)) for s, t in zip(s_shapes, t_shapes))
        count = len(s_shapes)
        self.layer_weights = [2.0 ** (k - count + 1) for k in range(count)]
        self.margin = float(margin)
        self.init_fraction = float(init_fraction)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("ab", teacher)
        return {"ab": self.ab_loss(student, teacher)}

    def ab_loss(self, student: ModelOutput, teacher: ModelOutput) -> Tensor:
        pairs = paired_stages("ab", student, teacher)
        if len(pairs) != len(self.connectors):
            raise ValueError(
                f"ab was built for {len(self.connectors)} stages but got {len(pairs)} stage outputs; "
                "build it with the ModelShapes of the models you pass"
            )
        total = 0.0
        for connect, weight, shapes, (f_s, f_t) in zip(self.connectors, self.layer_weights, self.shapes, pairs):
            check_features("ab", f_s, f_t)
            if (tuple(f_s.shape[1:]), tuple(f_t.shape[1:])) != shapes:
                raise ValueError(
                    f"ab: a connector built for student maps {shapes[0]} and teacher maps {shapes[1]} got "
                    f"{tuple(f_s.shape[1:])} and {tuple(f_t.shape[1:])}; pass the models the loss was built for"
                )
            total = total + weight * boundary_loss(connect(f_s), f_t, self.margin) / f_s.shape[0]
        return total * 3 / 1000

    def init_stage(self, student: nn.Module) -> InitStage | None:
        """Connectors and the student's feature layers, trained with the AB loss alone; then the
        connectors are frozen (RepDistiller's ``init()`` and main loop)."""
        return InitStage(
            modules=(self.connectors, *feature_modules("ab", student)),
            loss=lambda s, t: {"ab.init": self.ab_loss(s, require_outputs("ab", t))},
            fraction=self.init_fraction,
            frozen_after=(self.connectors,),
        )
