"""One in-memory dataset class for every source: uint8 images, labels, augmentation, normalisation."""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from icd_lib.data.transforms import normalize, random_crop_flip


class ImageDataset(Dataset):
    """Images held in memory as uint8, served as ``(image, label, index)``.

    image: (C, H, W) float32, normalised with ``mean``/``std`` (C = len(mean); a grey source is
    repeated to C channels), augmented with the paper's crop and flip when ``augment`` is true.
    label: int. index: the item's position in this dataset (CRD's memory bank keys on it).

    The uint8 tensors are public for the fast path, which moves them to the GPU once and calls
    :meth:`transform` on whole batches there:

    images: (N, C_stored, H, W) uint8; labels: (N,) int64.

    The augmentation draws from this dataset's own generator, which the loader of
    :func:`icd_lib.data.make_loader` reseeds every epoch, so an epoch's crops and flips depend
    only on (seed, epoch) and not on what ran before.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        self.images = images
        self.labels = labels.long()
        self.class_names = tuple(class_names)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, int, int]]:
        """Items at ``indices``, transformed as one batch (a DataLoader calls this once per batch)."""
        positions = torch.as_tensor([int(i) for i in indices], dtype=torch.long)
        n = len(self)
        if positions.numel() and not bool(((positions >= -n) & (positions < n)).all()):
            raise IndexError(f"indices {indices} out of range for a dataset of {n} items")
        positions %= max(n, 1)
        images = self.transform(self.images[positions])
        return list(zip(images.unbind(0), self.labels[positions].tolist(), positions.tolist()))

    def transform(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 (n, C_stored, H, W) on any device -> float (n, C, H, W): crop+flip if augmenting, then normalise.

        ``generator`` defaults to this dataset's own (CPU) generator; pass one on the images'
        device for GPU batches.
        """
        if self.augment:
            images = random_crop_flip(images, self.generator if generator is None else generator)
        return normalize(images, self.mean, self.std)

    def with_augment(self, augment: bool) -> "ImageDataset":
        """The same items (sharing their tensors), with the paper's crop and flip switched on or off."""
        dataset = copy.copy(self)
        dataset.augment = augment
        dataset.generator = torch.Generator().manual_seed(self.generator.initial_seed())
        return dataset

    def reseed_augmentation(self, seed: int) -> None:
        """Restart the augmentation's random stream at ``seed`` (the loader calls this every epoch)."""
        self.generator.manual_seed(seed)

    def class_counts(self) -> Tensor:
        """(num_classes,) number of items of each class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} items, {self.num_classes} classes, "
            f"stored {tuple(self.images.shape[1:])}, augment={self.augment})"
        )


def stratified_indices(labels: Tensor, size: int, seed: int = 0) -> Tensor:
    """``size`` positions, sorted, keeping each class's share of ``labels`` (largest remainders round).

    labels: (N,) int. Within each class the positions are a seeded random choice.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    n = labels.shape[0]
    if size > n:
        raise ValueError(f"size={size} exceeds the {n} items available; use size=None for all of them")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    remainder_order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[remainder_order[: size - int(quota.sum())]] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, k in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    return torch.cat(chosen).sort().values
