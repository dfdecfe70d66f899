"""Factor transfer (Kim et al., "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018), as RepDistiller runs it (Tian et al. 2020, ``distiller_zoo/FT.py``,
``models/util.py`` ``Paraphraser`` and ``Translator``, ``helper/pretrain.py``, ``train_student.py``).

Both read the last stage output (``features[-1]``, the reference code's ``feat[-2]``):

- the paraphraser P, an auto-encoder of the teacher's map: encoder conv3x3 (c_t -> c_t) ->
  conv3x3 (c_t -> k c_t) -> conv3x3 (k c_t -> k c_t), decoder the mirror image in transposed
  3x3 convs, a LeakyReLU(0.1) after each, no BatchNorm; its encoder gives the teacher's factor;
- the translator, the student's side: the encoder's three convs from c_s channels, each followed
  by BatchNorm and LeakyReLU(0.1); it gives the student's factor.

k is the paraphrase rate, 0.5. With a(F) = normalise(mean over channels of F^2), each image's row
scaled to unit L2 norm, and the larger factor map average-pooled to the smaller one's size,

    loss = mean over (n, h*w) of |a(translator(f_s)) - a(encoder(f_t))|       (p = 1)

This is RepDistiller's ``FactorTransfer(p1=2, p2=1)``. The paper's loss is the p = 1 distance of
the factors themselves, each flattened to one vector and L2-normalised; RepDistiller first reduces
each factor to an attention map over positions (mean of squares over the channels), and the
recipe, with its weight 200, is RepDistiller's.

Two stages, as in the paper (the paraphraser is trained first, by reconstruction, then fixed) and
RepDistiller: an initialisation stage trains the paraphraser alone to reconstruct the teacher's
map (loss mean squared error of P(f_t) and f_t), for ``init_fraction`` of the schedule (30 of 240
epochs, 1/8) at ``init_lr`` = 0.01 (RepDistiller's rate for ResNet and WRN students, all the
students of this book; for others it uses the run's rate: pass ``init_lr=None``). The student is
in eval mode and untouched during the stage. Then the paraphraser is frozen (left out of the
optimizer, in eval mode, no gradients), and the main epochs train the student and the translator
with cross-entropy + 200 x this loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, InitStage, register
from icd_lib.losses.common import check_features, match_spatial, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes


def conv_block(channels: list[int], transposed: bool = False, batch_norm: bool = False) -> list[nn.Module]:
    """3x3 stride-1 (transposed) convs channels[0] -> channels[1] -> ..., each (BN and) LeakyReLU(0.1)."""
    layers: list[nn.Module] = []
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers.append(conv(c_in, c_out, 3, 1, 1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.1))
    return layers


class Paraphraser(nn.Module):
    """Auto-encoder of a (c, h, w) teacher map with a (k c, h, w) factor in the middle."""

    def __init__(self, channels: int, rate: float = 0.5):
        super().__init__()
        factor = int(channels * rate)
        self.encoder = nn.Sequential(*conv_block([channels, channels, factor, factor]))
        self.decoder = nn.Sequential(*conv_block([factor, factor, channels, channels], transposed=True))

    def forward(self, f_t: Tensor) -> tuple[Tensor, Tensor]:
        """(factor, reconstruction)."""
        factor = self.encoder(f_t)
        return factor, self.decoder(factor)


def translator(student_channels: int, teacher_channels: int, rate: float = 0.5) -> nn.Sequential:
    """The student's encoder: c_s -> c_s -> k c_t -> k c_t, each conv followed by BN and LeakyReLU(0.1)."""
    factor = int(teacher_channels * rate)
    return nn.Sequential(*conv_block([student_channels, student_channels, factor, factor], batch_norm=True))


def factor_map(factor: Tensor, p: float) -> Tensor:
    """(n, c, h, w) -> (n, h*w): channel mean of factor^p, each row scaled to unit L2 norm."""
    return F.normalize(factor.pow(p).mean(dim=1).flatten(1), dim=1)


@register("ft")
class FactorTransfer(Distiller):
    """Distance of the student's (translated) and the teacher's (paraphrased) factors.

    Options: ``rate`` (k, 0.5), ``p1`` (power of the channel mean, 2), ``p2`` (the distance, 1:
    absolute, else the p2-th power), ``init_fraction`` (1/8), ``init_lr`` (0.01; None: the run's).
    """

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        rate: float = 0.5,
        p1: float = 2.0,
        p2: float = 1.0,
        init_fraction: float = 1 / 8,
        init_lr: float | None = 0.01,
    ):
        super().__init__()
        teacher_shapes = require_teacher("ft", teacher_shapes)
        if not student_shapes.feature_shapes or not teacher_shapes.feature_shapes:
            raise ValueError("ft reads the last feature map of both models; their ModelShapes list none")
        self.student_shape = tuple(student_shapes.feature_shapes[-1])
        self.teacher_shape = tuple(teacher_shapes.feature_shapes[-1])
        if not 0 < rate <= 1 or int(self.teacher_shape[0] * rate) < 1:
            raise ValueError(f"ft: rate must lie in (0, 1] and leave at least one factor channel, got {rate}")
        self.paraphraser = Paraphraser(self.teacher_shape[0], rate)
        self.translator = translator(self.student_shape[0], self.teacher_shape[0], rate)
        self.p1, self.p2 = float(p1), float(p2)
        self.init_fraction = float(init_fraction)
        self.init_lr = None if init_lr is None else float(init_lr)

    def last_maps(self, student: ModelOutput | None, teacher: ModelOutput) -> tuple[Tensor | None, Tensor]:
        """The last feature maps, checked against the shapes the loss was built for."""
        f_t = teacher.features[-1]
        f_s = student.features[-1] if student is not None else f_t
        check_features("ft", f_s, f_t)
        if tuple(f_t.shape[1:]) != self.teacher_shape or (student is not None and tuple(f_s.shape[1:]) != self.student_shape):
            raise ValueError(
                f"ft was built for last feature maps of shape {self.student_shape} (student) and {self.teacher_shape} "
                f"(teacher), got {tuple(f_s.shape[1:])} and {tuple(f_t.shape[1:])}; pass the models the loss was built for"
            )
        return (f_s if student is not None else None), f_t

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        f_s, f_t = self.last_maps(student, require_outputs("ft", teacher))
        with torch.no_grad():  # the teacher's factor is a target; the paraphraser trains only in the init stage
            factor_t = self.paraphraser.encoder(f_t)
        factor_s, factor_t = match_spatial(self.translator(f_s), factor_t)
        difference = factor_map(factor_s, self.p1) - factor_map(factor_t, self.p1)
        loss = difference.abs().mean() if self.p2 == 1 else difference.pow(self.p2).mean()
        return {"ft": loss}

    def reconstruction_loss(self, teacher: ModelOutput) -> Tensor:
        """Mean squared error of the paraphraser's reconstruction of the teacher's last map."""
        _, f_t = self.last_maps(None, teacher)
        return F.mse_loss(self.paraphraser(f_t)[1], f_t)

    def init_stage(self, student: nn.Module) -> InitStage | None:
        """The paraphraser, trained to reconstruct the teacher's map, then frozen."""
        return InitStage(
            modules=(self.paraphraser,),
            loss=lambda s, t: {"ft.init": self.reconstruction_loss(require_outputs("ft", t))},
            fraction=self.init_fraction,
            lr=self.init_lr,
            frozen_after=(self.paraphraser,),
        )
