"""The paper's augmentation and normalisation, on batches of uint8 images on any device.

The same functions serve one item at a time (the DataLoader path) and whole batches on a GPU
(the fast path), so both see exactly the same augmentation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

PAPER_CROP_PADDING = 4


def random_crop_flip(images: Tensor, generator: torch.Generator | None = None, padding: int = PAPER_CROP_PADDING) -> Tensor:
    """RandomCrop(size, padding, zero fill) and a horizontal flip with probability 1/2, per image.

    images: (n, c, h, w), any dtype; returns the same shape and dtype. The random offsets and
    flips are drawn from ``generator`` (on its own device; default: torch's global generator).
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (n, c, h, w), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    gen_device = generator.device if generator is not None else "cpu"
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=gen_device).to(images.device)
    flips = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(images.device)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # (n, h)
    cols_forward = torch.arange(w, device=images.device)
    cols = offsets[:, 1:] + torch.where(flips[:, None], cols_forward.flip(0), cols_forward)  # (n, w)
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 images (n, c, h, w) in [0, 255] -> float32 ``(x / 255 - mean) / std`` per channel.

    A single stored channel is repeated to ``len(mean)`` channels (grey Fashion-MNIST served as RGB).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    channels = len(mean)
    if images.shape[1] not in (1, channels):
        raise ValueError(f"images have {images.shape[1]} channels; expected 1 or {channels}")
    x = images.expand(-1, channels, -1, -1).float().div_(255)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean_t).div_(std_t)


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inverse of :func:`normalize` up to the uint8 rounding: float (n, c, h, w) back to [0, 1], for plots."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std_t + mean_t).clamp(0, 1)
