"""``load_dataset``: one entry point for every dataset the book and the paper's recipe use."""
from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from icd_lib.data.content_style import ContentStyleDataset
from icd_lib.data.images import ImageDataset, stratified_indices
from icd_lib.data.info import dataset_info
from icd_lib.data.sources import READERS, DatasetCorruptError, data_root


def load_dataset(
    name: str,
    train: bool,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    size: int | None = None,
    seed: int = 0,
    normalize_like: str | None = None,
    **kwargs,
) -> ImageDataset:
    """Dataset ``name`` (one of ``icd_lib.data.DATASETS``), split ``train``, as items ``(image (C, H, W) float, label, index)``.

    root:      the data folder (default :func:`data_root`: ``$ICD_DATA``, else the repository's ``data/``
               in a checkout, else ``~/.cache/icd_lib`` for an installed package).
    download:  True: download (if not already there); False: never; None: only if the files are missing.
               A dataset that is missing and cannot be downloaded raises ``DatasetNotFoundError``
               (a ``FileNotFoundError``) that says how to get it; one whose files are there but
               unreadable raises ``DatasetCorruptError`` (a ``ValueError``) naming what to delete.
    The training split is augmented with the paper's RandomCrop(32, padding=4) + horizontal flip,
    the test split is not (``ImageDataset.with_augment`` switches it).
    size:      a class-stratified subset of this many items, chosen with ``seed`` (None: all).
    normalize_like: normalise with another dataset's mean/std (e.g. ``"cifar100"`` to feed STL-10 to a
               network trained on CIFAR-100); default: this dataset's own.
    kwargs:    only for ``"content_style"``: ``content``, ``style_mode``, ``spurious_strength``
               (see :class:`ContentStyleDataset`).

    Every dataset is served as 32x32 with 3 channels (``dataset_info(name)`` says so): Fashion-MNIST
    is zero-padded 28 -> 32 and its grey channel repeated, STL-10 and Tiny ImageNet are resized.
    """
    info = dataset_info(name)
    if name == "content_style":
        if normalize_like is not None:
            raise TypeError("normalize_like is not supported for content_style (it is served scaled to [-1, 1])")
        return ContentStyleDataset(train=train, size=size, seed=seed, root=root, download=download, **kwargs)
    if kwargs:
        raise TypeError(f"unexpected arguments for {name!r}: {', '.join(kwargs)} (they apply to content_style only)")
    stats = dataset_info(normalize_like) if normalize_like is not None else info
    raw = READERS[name](data_root(root), train, download)
    check_label_range(raw.labels, info.num_classes, name, data_root(root))
    images, labels = raw.images, raw.labels
    if size is not None:
        keep = stratified_indices(labels, size, seed)
        images, labels = images[keep], labels[keep]
    return ImageDataset(
        images, labels, raw.class_names, stats.mean, stats.std, augment=train, seed=seed
    )


def check_label_range(labels: Tensor, num_classes: int, name: str, folder: Path) -> None:
    """``DatasetCorruptError`` unless every label (n,) is a class index in [0, ``num_classes``)."""
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if len(outside):
        raise DatasetCorruptError(
            f"{name}: {len(outside)} labels read from {folder} lie outside 0..{num_classes - 1} (such as "
            f"{int(outside[0])}): a label file is corrupt; delete {name}'s files there and get them again"
        )
