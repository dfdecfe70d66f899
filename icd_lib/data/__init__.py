"""Datasets, the paper's augmentation, offline sources, the content/style generator and loaders.

Entry points: :func:`load_dataset`, :func:`dataset_info`, :func:`make_loader`, :func:`data_root`
and :class:`ContentStyleDataset`. Every dataset is served as 32x32x3 normalised tensors in items
``(image, label, index)``.
"""
from __future__ import annotations

from icd_lib.data.content_style import PALETTE, STYLE_KEYS, ContentStyleDataset, render_images
from icd_lib.data.datasets import load_dataset
from icd_lib.data.images import ImageDataset, stratified_indices
from icd_lib.data.info import DATASETS, DatasetInfo, dataset_info
from icd_lib.data.loaders import EpochLoader, EpochSampler, make_loader
from icd_lib.data.seeds import derive_seed
from icd_lib.data.sources import DatasetNotFoundError, data_root, install_debian_fashion_mnist
from icd_lib.data.transforms import denormalize, normalize, random_crop_flip

__all__ = [
    "DATASETS",
    "PALETTE",
    "STYLE_KEYS",
    "ContentStyleDataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EpochLoader",
    "EpochSampler",
    "ImageDataset",
    "data_root",
    "dataset_info",
    "denormalize",
    "derive_seed",
    "install_debian_fashion_mnist",
    "load_dataset",
    "make_loader",
    "normalize",
    "random_crop_flip",
    "render_images",
    "stratified_indices",
]
