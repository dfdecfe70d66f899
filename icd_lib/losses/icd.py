"""Invariant Consistency Distillation (ICD): the paper's eq. 8-11, as the authors' code computes it.

For a batch of n images with pooled penultimate features f_s (n, d_s) and f_t (n, d_t):

    z_s = normalise(W_s f_s + c_s),  z_t = normalise(W_t f_t + c_t)     projection heads, (n, 128)
    L   = s * z_s @ z_t.T + b,       s = min(exp(tau), max_scale)       logits (n, n), eq. 9-10
    contrast   = mean_i  -log softmax(L[i, :])[i]                         eq. 9
    P = softmax of L over rows      P[i, j]: student i matches teacher j
    Q = softmax of L over columns, transposed
                                     Q[i, j]: teacher i matches student j
    invariance = mean_i  KL(Q[i] || P[i])                                 eq. 11 (Q is not detached)
    L_icd = contrast + alpha * invariance                                 eq. 8

The bias b has no effect: adding a constant to every logit changes neither a row softmax nor a
column softmax, so neither the loss nor any gradient depends on b, and dL/db = 0 exactly. It is
kept because the paper has it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icd_lib.losses.base import Distiller, declared_options, register
from icd_lib.losses.common import check_features, require_outputs, require_teacher
from icd_lib.outputs import ModelOutput, ModelShapes

Gather = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, int]]
"""(z_s, z_t) of this process -> (z_s of all processes, z_t of all processes, offset of this
process's first row in them). See ``ICDLoss`` for the rule it must follow."""


class ICDLoss(nn.Module):
    """L_icd (paper eq. 8) on pooled features f_s (n, s_dim) and f_t (n, t_dim); a scalar.

    Attributes: ``embed_s``, ``embed_t`` (the ``nn.Linear`` projection heads), ``tau`` (logit
    scale = exp(tau), clamped at ``max_scale``; a parameter, or a fixed buffer when
    ``learn_scale=False``), ``bias`` (scalar parameter; provably no effect, see the module doc).

    ``alpha=0`` gives the contrastive term alone.

    ``gather``: negatives from the global batch under data parallelism. Each process calls the loss
    on its local batch; ``gather(z_s, z_t)`` must return the normalised embeddings of *all*
    processes concatenated in rank order (autograd-aware, e.g.
    ``torch.distributed.nn.functional.all_gather``) and the offset of the local rows in them.
    Each process then computes the rows of the global n_total x n_total logit matrix L that belong
    to its own images: its students against all teachers (for P and the contrast, target column
    ``offset + i``) and its teachers against all students (the rows of L.T, for Q), and averages
    over its local rows. Rule: when every process holds the same local batch size, the mean of the
    per-process losses equals the single-process loss on the concatenated batch, and since DDP
    averages gradients over processes (and all_gather's backward sums the gradients sent to each
    process's embeddings) the gradients are the same too. Without ``gather`` the batch is the
    whole world (offset 0).
    """

    def __init__(
        self,
        s_dim: int,
        t_dim: int,
        feat_dim: int = 128,
        alpha: float = 0.5,
        init_tau: float = 1.0,
        max_scale: float = 10.0,
        learn_scale: bool = True,
        gather: Gather | None = None,
    ):
        super().__init__()
        for name, value in (("s_dim", s_dim), ("t_dim", t_dim), ("feat_dim", feat_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ICDLoss: {name} must be a positive int, got {value!r}")
        if alpha < 0:
            raise ValueError(f"ICDLoss: alpha weighs the invariance term and must be >= 0, got {alpha}")
        if max_scale <= 0:
            raise ValueError(f"ICDLoss: max_scale bounds the logit scale and must be > 0, got {max_scale}")
        self.s_dim, self.t_dim = s_dim, t_dim
        self.alpha = float(alpha)
        self.max_scale = float(max_scale)
        self.gather = gather
        self.embed_s = nn.Linear(s_dim, feat_dim)
        self.embed_t = nn.Linear(t_dim, feat_dim)
        tau = torch.tensor(float(init_tau))
        if learn_scale:
            self.tau = nn.Parameter(tau)
        else:
            self.register_buffer("tau", tau)
        self.bias = nn.Parameter(torch.zeros(()))

    def logit_scale(self) -> Tensor:
        """s = min(exp(tau), max_scale), a scalar (the paper's 1/temperature)."""
        return self.tau.exp().clamp(max=self.max_scale)

    def embed(self, f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
        """(n, s_dim), (n, t_dim) -> z_s, z_t (n, feat_dim), rows on the unit sphere (eq. 10)."""
        check_features(
            "ICDLoss", f_s, f_t, dims=(self.s_dim, self.t_dim), dtypes=(self.embed_s.weight.dtype, self.embed_t.weight.dtype)
        )
        return F.normalize(self.embed_s(f_s), dim=1), F.normalize(self.embed_t(f_t), dim=1)

    def _logits(self, anchors: Tensor, others: Tensor) -> Tensor:
        """s * anchors @ others.T + b: (n, k), (m, k) -> (n, m)."""
        return self.logit_scale() * anchors @ others.T + self.bias

    def terms(self, f_s: Tensor, f_t: Tensor) -> dict[str, Tensor]:
        """{"contrast": eq. 9, "invariance": eq. 11}, both scalars >= 0, averaged over the local rows."""
        z_s, z_t = self.embed(f_s, f_t)
        all_s, all_t, offset = self.gather(z_s, z_t) if self.gather else (z_s, z_t, 0)
        if all_s.shape[0] < 2:
            raise ValueError("ICDLoss needs at least 2 images in the batch: the negatives are the other images")
        student_rows = self._logits(z_s, all_t)  # rows of L: local students vs all teachers
        teacher_rows = self._logits(z_t, all_s)  # rows of L.T: local teachers vs all students
        targets = torch.arange(z_s.shape[0], device=z_s.device) + offset
        log_p = F.log_softmax(student_rows, dim=1)
        log_q = F.log_softmax(teacher_rows, dim=1)
        return {
            "contrast": F.nll_loss(log_p, targets),
            "invariance": (log_q.exp() * (log_q - log_p)).sum(dim=1).mean(),
        }

    def combine(self, terms: dict[str, Tensor]) -> Tensor:
        """contrast + alpha * invariance (eq. 8)."""
        return terms["contrast"] + self.alpha * terms["invariance"]

    def forward(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        """L_icd, a scalar (eq. 8)."""
        return self.combine(self.terms(f_s, f_t))

    def logit_matrix(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        """L (n, n) of the local batch: L[i, j] = s * z_s[i] . z_t[j] + b (for heatmaps)."""
        return self._logits(*self.embed(f_s, f_t))

    def matching_distributions(self, f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
        """(P, Q), each (n, n) with rows summing to 1: P = row softmax of L, Q = column softmax of L, transposed."""
        logits = self.logit_matrix(f_s, f_t)
        return logits.softmax(dim=1), logits.softmax(dim=0).T


@register("icd")
class ICD(Distiller):
    """ICD on the pooled features of student and teacher (options: those of ``ICDLoss``).

    Terms: "icd" (eq. 8), diagnostics "icd.contrast", "icd.invariance", "icd.scale".
    """

    def __init__(
        self, student_shapes: ModelShapes, teacher_shapes: ModelShapes | None, num_data: int | None = None, **options
    ):
        super().__init__()
        teacher_shapes = require_teacher("icd", teacher_shapes)
        self.loss = ICDLoss(student_shapes.pooled_dim, teacher_shapes.pooled_dim, **options)

    @classmethod
    def option_types(cls) -> dict[str, object]:
        return declared_options(ICDLoss.__init__, {"self", "s_dim", "t_dim"})

    def share_batch(self, gather) -> bool:
        """Take the negatives from the global batch (see ``ICDLoss``'s ``gather``)."""
        self.loss.gather = gather
        return True

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        teacher = require_outputs("icd", teacher)
        terms = self.loss.terms(student.pooled, teacher.pooled)
        return {
            "icd": self.loss.combine(terms),
            "icd.contrast": terms["contrast"].detach(),
            "icd.invariance": terms["invariance"].detach(),
            "icd.scale": self.loss.logit_scale().detach(),
        }
