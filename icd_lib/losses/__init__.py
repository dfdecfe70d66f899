"""Every distillation loss of the book, behind one interface (see ``icd_lib.losses.base``).

Importing this package registers all methods: ce, kd, fitnet, at, sp, cc, rkd, pkt, vid, nst,
crd, icd, the two-stage feature methods ab, ft and fsp (each with an initialisation stage, see
``icd_lib.losses.base.InitStage``), and the logit methods dkd (decoupled KD), wsld (weighted soft
labels) and dist (relations of the predictions); ``icd_lib.losses.ls`` holds the logit
standardisation that kd and dkd apply with ``standardize=True``. Build one with
``build_method(name, student_shapes, teacher_shapes, num_data=...)`` or a weighted sum of several
with ``Objective(weights, student_shapes, teacher_shapes, ...)``.
"""
from __future__ import annotations

from icd_lib.losses import ab, at, cc, crd, dist, dkd, fitnet, fsp, ft, icd, kd, nst, pkt, rkd, sp, vid, wsld  # noqa: F401  (registration)
from icd_lib.losses.base import Distiller, InitStage, Objective, available_methods, build_method, register
from icd_lib.losses.icd import ICDLoss
from icd_lib.losses.memory import memory_footprint

__all__ = ["Distiller", "ICDLoss", "InitStage", "Objective", "available_methods", "build_method", "memory_footprint", "register"]
