"""How much state a method keeps: trainable parameters and buffers (CRD's memory bank), in bytes."""
from __future__ import annotations

import torch

from icd_lib.losses.base import build_method
from icd_lib.outputs import ModelShapes


def memory_footprint(
    name: str,
    student_shapes: ModelShapes,
    teacher_shapes: ModelShapes | None,
    num_data: int | None = None,
    dtype: torch.dtype = torch.float32,
    **options,
) -> dict[str, int]:
    """{"parameters": bytes, "buffers": bytes} of method ``name`` built for a dataset of ``num_data`` images.

    The method is built on PyTorch's "meta" device, so nothing is allocated: ImageNet-sized banks
    are measured as cheaply as small ones. Sizes are those of ``dtype`` (float32: 4 bytes an entry).
    """
    with torch.device("meta"):
        method = build_method(name, student_shapes, teacher_shapes, num_data=num_data, **options)
    entry = torch.empty((), dtype=dtype).element_size()
    return {
        "parameters": sum(p.numel() for p in method.parameters()) * entry,
        "buffers": sum(b.numel() for b in method.buffers()) * entry,
    }
