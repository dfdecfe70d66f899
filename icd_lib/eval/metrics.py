"""Accuracy, logits on a data set, the class-mean logit difference (paper Fig. 1) and the paper's
relative-improvement metric (footnote 1).

Loaders may yield ``(x, y)`` or ``(x, y, index)`` batches; models return logits from ``model(x)``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; its previous mode (train or eval) is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Iterable) -> tuple[Tensor, Tensor]:
    """Run ``model`` (in eval mode) over ``loader``: logits (N, C) float32 and labels (N,), on the CPU."""
    device = model_device(model)
    logits, labels = [], []
    with evaluation_mode(model):
        for batch in loader:
            x, y = batch[0], batch[1]
            logits.append(model(x.to(device, non_blocking=True)).float())
            labels.append(y.to(device, non_blocking=True))
    if not logits:
        raise ValueError("the loader yielded no batches; is the data set empty?")
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent, ``{"top1": ..., "top5": ...}``.

    Counts accumulate on the model's device and are read once at the end. A k larger than the
    number of classes counts every prediction as correct.
    """
    device = model_device(model)
    correct = torch.zeros(len(topk), dtype=torch.long, device=device)
    total = 0
    with evaluation_mode(model):
        for batch in loader:
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            logits = model(x)
            ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices  # (n, kmax)
            hits = ranked == y[:, None]
            correct += torch.stack([hits[:, :k].any(dim=1).sum() for k in topk])
            total += y.shape[0]
    if total == 0:
        raise ValueError("the loader yielded no batches; is the data set empty?")
    return {f"top{k}": 100.0 * c / total for k, c in zip(topk, correct.tolist())}


def class_mean_logits(logits: Tensor, labels: Tensor, num_classes: int, standardize: bool = False) -> Tensor:
    """(C, C) matrix whose row c is the mean logit vector over the examples of class c.

    logits: (N, C); labels: (N,). With ``standardize``, each logit vector is first shifted to
    mean 0 and scaled to standard deviation 1 (population std), then averaged.
    """
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],) or labels.is_floating_point():
        raise ValueError(
            f"labels must be class indices of shape ({logits.shape[0]},) and an integer dtype, "
            f"got shape {tuple(labels.shape)} and {labels.dtype}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got values from {int(labels.min())} to {int(labels.max())}; "
            "is num_classes the model's number of classes?"
        )
    labels = labels.long()
    logits = logits.double()
    if standardize:
        logits = (logits - logits.mean(dim=1, keepdim=True)) / logits.std(dim=1, unbiased=False, keepdim=True)
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        absent = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {absent} have no examples; evaluate on a set that contains every class")
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64).index_add_(0, labels, logits)
    return sums / counts[:, None]


class LogitDifference(NamedTuple):
    matrix: Tensor  # (C, C): |S - T| with a zero diagonal
    mean_offdiag: float  # mean of the off-diagonal entries


def class_mean_difference(student: Tensor | Sequence[Sequence[float]], teacher: Tensor | Sequence[Sequence[float]],
                          centre_rows: bool = False) -> LogitDifference:
    """|S - T| of two (C, C) class-mean logit matrices, diagonal set to zero (paper Fig. 1).

    Tensors or nested lists (a record's matrices), computed in float64 on the CPU.
    ``centre_rows``: subtract each row's mean from S and T first, which removes a shift of an
    image's logits that no softmax sees.
    """
    s, t = (_float64_matrix(m, name) for m, name in ((student, "student"), (teacher, "teacher")))
    if s.dim() != 2 or s.shape[0] != s.shape[1] or s.shape != t.shape or s.shape[0] < 2:
        raise ValueError(f"expected two square (C, C) matrices with C >= 2, got {tuple(s.shape)} and {tuple(t.shape)}")
    if centre_rows:
        s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    diff = (s - t).abs()
    diff.fill_diagonal_(0.0)
    c = diff.shape[0]
    return LogitDifference(diff, float(diff.sum() / (c * (c - 1))))


def _float64_matrix(matrix, name: str) -> Tensor:
    try:
        return torch.as_tensor(matrix).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"the {name} matrix must be a (C, C) tensor or list of equal-length rows: {err}") from None


def logit_correlation_difference(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, num_classes: int, standardize: bool = False
) -> LogitDifference:
    """``class_mean_difference`` of the class-mean logit matrices of student and teacher logits.

    Smaller entries mean the student reproduces the teacher's inter-class structure.
    """
    return class_mean_difference(class_mean_logits(student_logits, labels, num_classes, standardize),
                                 class_mean_logits(teacher_logits, labels, num_classes, standardize))


def relative_improvement(acc_method, acc_kd, acc_vanilla) -> float:
    """Paper footnote 1: mean over students i of (Acc_method_i - Acc_KD_i) / (Acc_KD_i - Acc_van_i).

    Scalars or equal-length sequences (one entry per student). Returns a fraction (0.2031 is the
    paper's "20.31%"). 0 means no better than KD, 1 means the method doubles KD's gain.
    """
    method, kd, vanilla = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (acc_method, acc_kd, acc_vanilla))
    if not method.shape == kd.shape == vanilla.shape or method.ndim != 1:
        raise ValueError(
            f"give one accuracy per student in each argument; got shapes {method.shape}, {kd.shape}, {vanilla.shape}"
        )
    gain = kd - vanilla
    if np.any(gain == 0):
        raise ValueError("KD and vanilla accuracy are equal for some student; the relative improvement is undefined")
    return float(np.mean((method - kd) / gain))
