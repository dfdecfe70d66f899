"""icd_lib: Invariant Consistency Distillation and the baselines it is compared with."""
from __future__ import annotations

__version__ = "0.1.0"

from icd_lib.outputs import ModelOutput, ModelShapes  # noqa: E402

__all__ = ["ModelOutput", "ModelShapes", "__version__"]
