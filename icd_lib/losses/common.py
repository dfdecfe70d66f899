"""Input checks and small tensor helpers shared by the loss modules.

The non-finite check never synchronises a GPU: it runs on CPU tensors (where it costs no
synchronisation), and on GPU tensors only while ``torch.autograd.set_detect_anomaly(True)`` is on
(a debugging mode that synchronises anyway). On a GPU without anomaly mode a non-finite input shows
up as a non-finite loss, which the trainer sees when it logs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.outputs import ModelOutput, ModelShapes


def may_synchronise(tensor: Tensor) -> bool:
    """True when a data-dependent check (``.any()`` read on the host) is free: CPU or anomaly mode."""
    return tensor.device.type == "cpu" or torch.is_anomaly_enabled()


def check_finite(name: str, tensor: Tensor) -> None:
    """ValueError if ``tensor`` holds NaN or Inf (checked only where ``may_synchronise``)."""
    if may_synchronise(tensor) and not bool(torch.isfinite(tensor).all()):
        raise ValueError(
            f"{name} contains NaN or Inf; the model diverged or its input is corrupt "
            "(lower the learning rate, or check the data)"
        )


def autocast_enabled(tensor: Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device type (then ``nn.Linear`` casts its inputs itself)."""
    try:
        return torch.is_autocast_enabled(tensor.device.type)
    except TypeError:  # torch < 2.4 takes no device type
        if tensor.device.type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def check_features(
    name: str,
    student: Tensor,
    teacher: Tensor,
    min_batch: int = 1,
    dims: tuple[int, int] | None = None,
    what: str = "features",
    dtypes: tuple[torch.dtype, torch.dtype] | None = None,
) -> None:
    """Check a (student, teacher) pair of feature tensors (or logits: ``what="logits"``) of one batch.

    Both must have the same batch size n >= ``min_batch``; with ``dims`` = (d_s, d_t) both must be
    2-d with those widths; with ``dtypes`` (those of the loss's projection heads) both must have
    them, except under autocast, which casts them; both must be finite (see ``check_finite``).
    Messages call them ``what``. Every failure is a one-line TypeError or ValueError that names
    ``name`` and says what to pass instead.
    """
    for who, tensor in (("student", student), ("teacher", teacher)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name}: the {who} {what} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name}: the {who} {what} must be floating point, got {tensor.dtype}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{name}: student and teacher batch sizes differ ({student.shape[0]} vs {teacher.shape[0]}); "
            "feed both models the same images"
        )
    if student.shape[0] < min_batch:
        raise ValueError(f"{name} needs a batch of at least {min_batch} images, got {student.shape[0]}")
    if dims is not None:
        for who, tensor, dim, dtype in zip(("student", "teacher"), (student, teacher), dims, dtypes or (None, None)):
            if tensor.dim() != 2 or tensor.shape[1] != dim:
                expected = f"(n, {dim})" + (f" {_dtype_name(dtype)}" if dtype is not None else "")
                raise ValueError(
                    f"{name}: expected {who} {what} of shape {expected}, got {tuple(tensor.shape)} "
                    f"{_dtype_name(tensor.dtype)}; pass the pooled penultimate features of the {who} model the "
                    f"loss was built for (build it with that model's ModelShapes)"
                )
    if dtypes is not None:
        for who, tensor, dtype in zip(("student", "teacher"), (student, teacher), dtypes):
            if tensor.dtype != dtype and not autocast_enabled(tensor):
                raise ValueError(
                    f"{name}: expected {who} {what} of dtype {_dtype_name(dtype)} (that of the loss's projection "
                    f"heads), got {_dtype_name(tensor.dtype)}; cast them with .to({dtype}) (the trainer casts "
                    f"bf16/fp16 model outputs to float32), or convert the loss with .to({tensor.dtype})"
                )
    check_finite(f"{name}: the student {what}", student)
    check_finite(f"{name}: the teacher {what}", teacher)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def require_teacher(name: str, teacher_shapes: ModelShapes | None) -> ModelShapes:
    """The teacher's shapes, or a ValueError: every distillation term needs a teacher."""
    if teacher_shapes is None:
        raise ValueError(f"method {name!r} distils from a teacher: build it with the teacher's ModelShapes")
    return teacher_shapes


def require_outputs(name: str, teacher: ModelOutput | None) -> ModelOutput:
    """The teacher's outputs, or a ValueError."""
    if teacher is None:
        raise ValueError(f"method {name!r} needs the teacher's outputs, got None")
    return teacher


def paired_stages(name: str, student: ModelOutput, teacher: ModelOutput) -> list[tuple[Tensor, Tensor]]:
    """(student, teacher) stage outputs, stem left out: ``features[1:]`` of both models."""
    if len(student.features) != len(teacher.features):
        raise ValueError(
            f"{name} pairs the stages of both models, but the student has {len(student.features)} "
            f"feature maps and the teacher {len(teacher.features)}"
        )
    if len(student.features) < 2:
        raise ValueError(
            f"{name} needs at least one stage output after the stem; got {len(student.features)} feature maps"
        )
    return list(zip(student.features[1:], teacher.features[1:]))


StageLoss = Callable[[Tensor, Tensor], Tensor]


def sum_over_stages(
    name: str, student: ModelOutput, teacher: ModelOutput, stage_loss: StageLoss | Sequence[StageLoss]
) -> Tensor:
    """sum_k stage_loss_k(f_s_k, f_t_k) over the ``paired_stages``, each pair checked first.

    ``stage_loss`` is one function for every stage (AT, NST) or one per stage (VID's regressors).
    """
    pairs = paired_stages(name, student, teacher)
    losses = list(stage_loss) if isinstance(stage_loss, Sequence | nn.ModuleList) else [stage_loss] * len(pairs)
    if len(losses) != len(pairs):
        raise ValueError(
            f"{name} was built for {len(losses)} stages but got {len(pairs)} stage outputs; "
            "build it with the ModelShapes of the models you pass"
        )
    total = 0.0
    for loss, (f_s, f_t) in zip(losses, pairs):
        check_features(name, f_s, f_t)
        total = total + loss(f_s, f_t)
    return total


def match_spatial(f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger of two (n, c, h, w) maps to the other's h x w (as AT, NST, VID do)."""
    s_size, t_size = f_s.shape[2:], f_t.shape[2:]
    if s_size[0] > t_size[0]:
        f_s = F.adaptive_avg_pool2d(f_s, t_size)
    elif s_size[0] < t_size[0]:
        f_t = F.adaptive_avg_pool2d(f_t, s_size)
    return f_s, f_t
