"""The offline transfer tasks: scikit-learn's 8x8 digits, served like the data a model was trained on.

The paper (Sec. 4.4, Table 4) freezes a CIFAR-100 student and fits a linear classifier on its
features of STL-10 and Tiny ImageNet, datasets it never saw. Offline, the book does the same
with a real dataset that ships inside scikit-learn: 1,797 hand-written digits, upscaled to 28x28
and zero-padded to 32x32 (as Fashion-MNIST is), grey repeated to 3 channels, normalised with the
statistics of the training dataset of the model that will read them. The split is the fixed,
class-stratified 80/20 one of the content/style dataset's digits (1,438 / 359 images).

Grey digits are an easy task for any Fashion-MNIST feature extractor (linear probes reach
96-98%), so a second, harder task renders the same digits in random content/style styles
(colour, texture, position, scale; ``icd_lib.data.content_style``), a distribution none of the
book's models was trained on (probes reach about 45-55%).
"""
from __future__ import annotations

import torch.nn.functional as F

from icd_lib.data.content_style import ContentStyleDataset, _digits_content
from icd_lib.data.images import ImageDataset
from icd_lib.data.info import DIGITS_CLASSES, dataset_info

TRANSFER_TASK = "digits"
STYLED_TRANSFER_TASK = "digits in random style"


def transfer_digits(train: bool, like_dataset: str) -> ImageDataset:
    """The digits' ``train`` (1,438) or test (359) split as (1, 32, 32) uint8 images, never augmented,
    normalised like ``like_dataset`` (the dataset the feature extractor was trained on)."""
    images, labels = _digits_content(train)
    stats = dataset_info(like_dataset)
    padded = F.pad(images[:, None], (2, 2, 2, 2))  # 28 -> 32, as Fashion-MNIST
    return ImageDataset(padded, labels.clone(), DIGITS_CLASSES, stats.mean, stats.std, augment=False)


def styled_transfer_digits(train: bool, like_dataset: str) -> ImageDataset:
    """The digits' split in random content/style styles (seed 0: the same images for every model),
    (3, 32, 32) uint8, never augmented, normalised like ``like_dataset``."""
    styled = ContentStyleDataset(content="digits", train=train, style_mode="random", seed=0).with_augment(False)
    stats = dataset_info(like_dataset)
    return ImageDataset(styled.images, styled.labels, DIGITS_CLASSES, stats.mean, stats.std, augment=False)
