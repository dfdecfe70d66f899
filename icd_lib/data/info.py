"""What each dataset is, as the models see it: classes, channels, size and normalisation."""
from __future__ import annotations

from typing import NamedTuple

from icd_lib.errors import InputError


class DatasetInfo(NamedTuple):
    """Static facts of a dataset as served by :func:`icd_lib.data.load_dataset`.

    ``image_size`` and ``in_channels`` are those of the served tensors, not of the files:
    Fashion-MNIST (28x28 grey) is served as 32x32x3, STL-10 (96x96) and Tiny ImageNet (64x64)
    as 32x32, so the CIFAR model zoo applies to all of them unchanged.
    ``class_names`` is None where the names come from the files (Tiny ImageNet's wnids);
    a loaded dataset always has them in its ``class_names`` attribute.
    """

    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGITS_CLASSES = tuple(str(d) for d in range(10))

# Per-channel mean and std of the training images, in [0, 1].
# CIFAR-100: the paper's (RepDistiller's) values. Fashion-MNIST: measured here on the 60,000
# training images padded to 32x32 (unpadded 28x28 they are 0.2860 / 0.3530).
# CIFAR-10, STL-10 and Tiny ImageNet: the values published with common training code (computed at
# the files' own resolution), not measured here. content_style: a fixed scaling to [-1, 1].
_CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))

DATASET_INFO: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(10, 3, 32, (0.2190,) * 3, (0.3318,) * 3, FASHION_MNIST_CLASSES),
    "cifar10": DatasetInfo(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES),
    "cifar100": DatasetInfo(100, 3, 32, *_CIFAR100_STATS, CIFAR100_CLASSES),
    "stl10": DatasetInfo(10, 3, 32, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), STL10_CLASSES),
    "tiny_imagenet": DatasetInfo(200, 3, 32, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), None),
    "content_style": DatasetInfo(10, 3, 32, (0.5,) * 3, (0.5,) * 3, FASHION_MNIST_CLASSES),
}
DATASETS: tuple[str, ...] = tuple(DATASET_INFO)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name`` (one of :data:`DATASETS`)."""
    try:
        return DATASET_INFO[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}") from None
