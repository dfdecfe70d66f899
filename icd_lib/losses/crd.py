"""Contrastive representation distillation (Tian et al. 2020) in its original form.

Pooled features go through linear heads to 128-d and are L2-normalised: v_s, v_t (n, 128). Two
memory banks (num_data, 128) hold one embedding per training image, for the student and for the
teacher. For anchor image i (dataset index y_i) and K negatives j_1..j_K:

    h(v, m) = exp(v . m / T) / Z                                   their eq. 19, T = 0.07
    L(v_i, bank) = -log h_pos / (h_pos + K/N) - sum_k log (K/N) / (h_k + K/N)   their eq. 18 (NCE)
    crd = mean_i L(v_s_i, teacher bank) + mean_i L(v_t_i, student bank)        both directions

Z is the normaliser, fixed once from the first batch as N * mean(exp(v . m / T)) (one per
direction), as in the authors' code. After the loss is computed, the bank rows of the batch move
to normalise(0.5 * old + 0.5 * new) (momentum 0.5). K = min(16384, num_data - 1).

Negatives, as in the authors' CIFAR-100 code (its default mode "exact"), when the training labels
are given (``train_labels``): K images of classes other than the anchor's, without replacement
when the anchor has at least K such images and with replacement otherwise. Without labels:
"instance-level" negatives, K images drawn uniformly, with replacement, from the other
num_data - 1 images (same class included).

Scores are computed densely (v @ bank.T, n x N) and the K + 1 needed per anchor picked from them:
the same values as gathering the sampled bank rows, with far less memory traffic when K is a
sizable fraction of N (16,384 of CIFAR-100's 50,000).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, register
from icd_lib.losses.common import check_features, may_synchronise, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes

EPS = 1e-7


@register("crd")
class CRD(Distiller):
    """CRD; options ``feat_dim`` (128), ``num_negatives`` (16384), ``temperature`` (0.07), ``momentum`` (0.5).

    Needs ``num_data`` (the training set's size) and the batch's dataset indices. ``train_labels``
    (num_data,) integer, the class of every training image, selects negatives from other classes
    (the trainer passes it; it is not saved in checkpoints).
    Terms: "crd", diagnostics "crd.student_anchor" and "crd.teacher_anchor".
    """

    needs_index = True
    uses_train_labels = True

    def __init__(
        self,
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None,
        num_data: int | None = None,
        feat_dim: int = 128,
        num_negatives: int = 16384,
        temperature: float = 0.07,
        momentum: float = 0.5,
        train_labels: Tensor | None = None,
    ):
        super().__init__()
        teacher_shapes = require_teacher("crd", teacher_shapes)
        if num_data is None or num_data < 2:
            raise ValueError(
                f"crd keeps a memory bank with one embedding per training image: build it with "
                f"num_data=len(train_set) (at least 2), got {num_data!r}"
            )
        if num_negatives < 1 or temperature <= 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"crd: need num_negatives >= 1, temperature > 0, 0 <= momentum < 1; got "
                f"{num_negatives}, {temperature}, {momentum}"
            )
        self.num_data = num_data
        self.num_negatives = min(num_negatives, num_data - 1)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.embed_s = nn.Linear(student_shapes.pooled_dim, feat_dim)
        self.embed_t = nn.Linear(teacher_shapes.pooled_dim, feat_dim)
        bound = 1 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(num_data, feat_dim) * 2 * bound - bound)
        self.register_buffer("memory_t", torch.rand(num_data, feat_dim) * 2 * bound - bound)
        # Z for student anchors and for teacher anchors; 0 means "not set yet"
        self.register_buffer("normaliser", torch.zeros(2))
        self.class_aware = train_labels is not None
        if self.class_aware:
            self._index_classes(self._checked_labels(train_labels))

    @property
    def negative_sampling(self) -> str:
        """Either "class-aware" (negatives from other classes) or "instance-level" (from all other images)."""
        return "class-aware" if self.class_aware else "instance-level"

    def _checked_labels(self, train_labels: Tensor) -> Tensor:
        if not isinstance(train_labels, Tensor) or train_labels.is_floating_point() or train_labels.dim() != 1:
            raise TypeError(
                f"crd: train_labels must be a 1-d integer tensor of class indices, got "
                f"{getattr(train_labels, 'dtype', type(train_labels).__name__)} of shape {tuple(getattr(train_labels, 'shape', ()))}"
            )
        if train_labels.shape[0] != self.num_data:
            raise ValueError(
                f"crd: train_labels holds {train_labels.shape[0]} labels but num_data is {self.num_data}; "
                "pass the labels of the same training set, one per image, in dataset-index order"
            )
        if bool((train_labels < 0).any()):
            raise ValueError("crd: train_labels must be class indices >= 0")
        return train_labels.long()

    def _index_classes(self, labels: Tensor) -> None:
        """Buffers for class-aware sampling (moved with the module, not saved in its state_dict).

        All (num_data,) int64 and indexed by dataset index, except ``by_class``: the dataset indices
        sorted by class, so that each class is one contiguous block of it.
        """
        class_size = torch.bincount(labels)
        block_start = class_size.cumsum(0) - class_size
        self.register_buffer("train_labels", labels, persistent=False)
        self.register_buffer("by_class", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("block_start", block_start[labels], persistent=False)
        self.register_buffer("block_size", class_size[labels], persistent=False)
        other_class_images = self.num_data - class_size[class_size > 0]
        if int(other_class_images.min()) == 0:
            raise ValueError("crd: train_labels hold a single class; class-aware negatives need two or more")
        # decided once here, so that sampling never reads a GPU value on the host
        self._all_fit = bool((other_class_images >= self.num_negatives).all())
        self._none_fit = not bool((other_class_images >= self.num_negatives).any())

    def sample_negatives(self, index: Tensor) -> Tensor:
        """(n,) dataset indices -> (n, K) dataset indices of negatives (see the module docstring)."""
        if not self.class_aware:
            draws = torch.randint(0, self.num_data - 1, (index.shape[0], self.num_negatives), device=index.device)
            return draws + (draws >= index.unsqueeze(1)).long()
        if self._all_fit:
            return self._other_classes_without_replacement(index)
        if self._none_fit:
            return self._other_classes_with_replacement(index)
        fits = (self.num_data - self.block_size[index]) >= self.num_negatives
        return torch.where(
            fits.unsqueeze(1),
            self._other_classes_without_replacement(index),
            self._other_classes_with_replacement(index),
        )

    def _other_classes_without_replacement(self, index: Tensor) -> Tensor:
        """(n,) -> (n, K): the K smallest of uniform random keys, other-class images only, are a
        uniform K-subset of them (rows of anchors with fewer than K such images are unusable)."""
        keys = torch.rand(index.shape[0], self.num_data, device=index.device)
        keys.masked_fill_(self.train_labels.unsqueeze(0) == self.train_labels[index].unsqueeze(1), 2.0)
        return torch.topk(keys, self.num_negatives, dim=1, largest=False, sorted=False).indices

    def _other_classes_with_replacement(self, index: Tensor) -> Tensor:
        """(n,) -> (n, K): u uniform in [0, N - n_c), moved past the anchor's class block of the sorted order."""
        start, size = self.block_start[index].unsqueeze(1), self.block_size[index].unsqueeze(1)
        uniform = torch.rand(index.shape[0], self.num_negatives, device=index.device)
        draws = (uniform * (self.num_data - size)).long().clamp_max(self.num_data - size - 1)
        return self.by_class[draws + size * (draws >= start)]

    def _nce(self, anchors: Tensor, bank: Tensor, candidates: Tensor, direction: int) -> Tensor:
        """NCE loss of (n, d) anchors against bank rows ``candidates`` (n, K + 1), positive first."""
        exp_scores = torch.gather(anchors @ bank.T, 1, candidates).div(self.temperature).exp()
        first_estimate = exp_scores.detach().mean() * self.num_data
        z = torch.where(self.normaliser[direction] > 0, self.normaliser[direction], first_estimate)
        self.normaliser[direction] = z
        h = exp_scores / z
        noise = self.num_negatives / self.num_data  # K * P_noise, P_noise = 1/N
        log_positive = torch.log(h[:, 0] / (h[:, 0] + noise + EPS))
        log_negatives = torch.log(noise / (h[:, 1:] + noise + EPS))
        return -(log_positive.sum() + log_negatives.sum()) / anchors.shape[0]

    def _updated(self, bank: Tensor, index: Tensor, new: Tensor) -> Tensor:
        """A copy of ``bank`` whose rows ``index`` are normalise(momentum * old + (1 - momentum) * new).

        Out of place: autograd still needs the old bank for the backward pass of this step.
        """
        rows = F.normalize(bank[index] * self.momentum + new.detach() * (1 - self.momentum), dim=1)
        return bank.index_copy(0, index, rows)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("crd", teacher)
        check_features(
            "crd", student.pooled, teacher.pooled,
            dims=(self.embed_s.in_features, self.embed_t.in_features),
            dtypes=(self.embed_s.weight.dtype, self.embed_t.weight.dtype),
        )
        index = self._checked_index(index, student.pooled.shape[0])
        v_s = F.normalize(self.embed_s(student.pooled), dim=1)
        v_t = F.normalize(self.embed_t(teacher.pooled), dim=1)
        candidates = torch.cat([index.unsqueeze(1), self.sample_negatives(index)], dim=1)
        student_anchor = self._nce(v_s, self.memory_t, candidates, direction=0)
        teacher_anchor = self._nce(v_t, self.memory_s, candidates, direction=1)
        with torch.no_grad():
            self.memory_s = self._updated(self.memory_s, index, v_s)
            self.memory_t = self._updated(self.memory_t, index, v_t)
        return {
            "crd": student_anchor + teacher_anchor,
            "crd.student_anchor": student_anchor.detach(),
            "crd.teacher_anchor": teacher_anchor.detach(),
        }

    def _checked_index(self, index: Tensor | None, n: int) -> Tensor:
        if index is None:
            raise ValueError("crd needs the dataset indices of the batch (a dataset that returns them)")
        if index.shape != (n,) or index.dtype != torch.long:
            raise ValueError(f"crd: index must be int64 of shape ({n},), got {index.dtype} {tuple(index.shape)}")
        if may_synchronise(index) and bool(((index < 0) | (index >= self.num_data)).any()):
            raise ValueError(
                f"crd: index holds values outside [0, {self.num_data}); is num_data the training set's size?"
            )
        return index
