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


def channel_values(values: Sequence[float] | Tensor, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-channel mean or std as a (1, c, 1, 1) tensor on ``device``.

    A tensor already of that dtype on that device is used as it is (a view, no copy): build it
    once and pass it to :func:`normalize` on every batch, since making it from Python numbers on
    each call is a blocking host-to-device copy on a GPU.
    """
    return torch.as_tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def normalize(
    images: Tensor,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """uint8 images (n, c, h, w) in [0, 255] -> float32 ``(x / 255 - mean) / std`` per channel.

    A single stored channel is repeated to ``len(mean)`` channels (grey Fashion-MNIST served as RGB).
    ``mean``/``std``: numbers, or tensors from :func:`channel_values` on the images' device (no
    copy per call). ``memory_format``: of the result (``torch.channels_last`` for the fast path).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    mean_t, std_t = channel_values(mean, images.device), channel_values(std, images.device)
    channels = mean_t.shape[1]
    if images.shape[1] not in (1, channels):
        raise ValueError(f"images have {images.shape[1]} channels; expected 1 or {channels}")
    x = images.expand(-1, channels, -1, -1).to(dtype=torch.float32, memory_format=memory_format).div_(255)
    return x.sub_(mean_t).div_(std_t)


def denormalize(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Inverse of :func:`normalize` up to the uint8 rounding: float (n, c, h, w) back to [0, 1], for plots."""
    mean_t = channel_values(mean, images.device, images.dtype)
    std_t = channel_values(std, images.device, images.dtype)
    return (images * std_t + mean_t).clamp(0, 1)
