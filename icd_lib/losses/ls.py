"""Logit standardisation (Sun et al., CVPR 2024): a z-score of each logit vector before the softmax.

Sun, Ren, Li, Wang and Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024
(arXiv:2403.01427); reference code: github.com/sunshangquan/logit-standardization-KD,
``mdistiller/distillers/KD.py`` and ``DKD.py`` (function ``normalize``) and ``tools/train.py``.

The paper replaces the shared temperature of KD by a per-sample one, the standard deviation of the
logit vector times a *base temperature*. In practice this is a pre-process of both models' logits,

    Z(z) = (z - mean(z)) / (eps + std(z)),    softmax(Z(z) / base_temperature),

so the student must match the teacher's logit *relations*, not its logit range. The mean and std
are over the classes of one sample; std is the sample std (Bessel's correction, ``torch.std``'s
default, as the reference code), ``eps`` = 1e-7 as there. Because of ``eps`` the result is
invariant to shifting and positive scaling of ``z`` up to a relative error of about eps / std(z).

KD and DKD take ``standardize=True`` (``icd_lib.losses.kd.KD``, ``icd_lib.losses.dkd.DKD``); the
recipes ``"kd+ls"`` and ``"dkd+ls"`` in ``icd_lib.config`` carry the reference code's CIFAR-100
options (base temperature 2, distillation weight 9).
"""
from __future__ import annotations

from torch import Tensor

STANDARDIZE_EPS = 1e-7


def standardize(logits: Tensor, eps: float = STANDARDIZE_EPS) -> Tensor:
    """Z-score each row of (n, k) ``logits``: (z - mean) / (eps + std), both over the k classes.

    ``std`` is the sample standard deviation (divided by k - 1), so k >= 2 classes are needed.
    """
    if logits.dim() != 2:
        raise ValueError(f"standardize: expected logits of shape (n, k), got {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(
            f"standardize: a logit vector needs at least 2 classes to have a std, got {logits.shape[1]}"
        )
    centred = logits - logits.mean(dim=1, keepdim=True)
    return centred / (eps + logits.std(dim=1, keepdim=True))
