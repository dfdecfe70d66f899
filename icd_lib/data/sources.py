"""Where the images come from: files on disk, the Debian package, or a download.

Every reader returns :class:`RawImages`: uint8 images at the served 32x32 size, labels and class
names. torchvision's own classes read CIFAR-10/100, STL-10 and Fashion-MNIST (their download code
included); Tiny ImageNet-200 is read from the layout of its zip. A dataset that is missing and
cannot be downloaded raises :class:`DatasetNotFoundError`, which says how to get it.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import Tensor

from icd_lib.data.info import STL10_CLASSES

DATA_ENV = "ICD_DATA"
SERVED_SIZE = 32
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded; the message says how to get them."""


class RawImages(NamedTuple):
    """images: (n, c, 32, 32) uint8 (c = 1 for grey sources); labels: (n,) int64."""

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$ICD_DATA``, else the repository's ``data/`` folder (next to ``icd_lib/``)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


_T = TypeVar("_T")


def _open_or_download(open_: Callable[[bool], _T], download: bool | None, name: str, how_to_get: str) -> _T:
    """``open_(download)`` with the policy of :func:`load_dataset`: ``None`` downloads only if the files are missing."""
    if download is not True:
        try:
            return open_(False)
        except RuntimeError as missing:  # torchvision: "Dataset not found or corrupted"
            if download is False:
                raise DatasetNotFoundError(f"{name} not found (download=False). {how_to_get}") from missing
    try:
        return open_(True)
    except (OSError, RuntimeError) as failed:  # URLError is an OSError; a bad checksum a RuntimeError
        raise DatasetNotFoundError(f"{name} could not be downloaded ({failed}). {how_to_get}") from failed


def _resize(images: Tensor, size: int = SERVED_SIZE, chunk: int = 4096) -> Tensor:
    """uint8 (n, c, h, w) -> uint8 (n, c, size, size), bilinear with antialiasing (like torchvision's Resize)."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = [images.new_zeros((0, images.shape[1], size, size))] + [
        F.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        .round_().clamp_(0, 255).to(torch.uint8)
        for part in images.split(chunk)
    ]
    return torch.cat(out)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def install_debian_fashion_mnist(root: Path, source: Path | None = None) -> bool:
    """Decompress the Debian package's Fashion-MNIST files into ``<root>/FashionMNIST/raw/``.

    The package (``apt-get install dataset-fashion-mnist``) ships the four original files
    recompressed, so torchvision's MD5 check of the ``.gz`` files fails; the decompressed files
    are what torchvision reads. Does nothing where the files are already there. Returns whether
    Fashion-MNIST's raw files are now present.
    """
    source = DEBIAN_FASHION_MNIST_DIR if source is None else source
    raw = root / "FashionMNIST" / "raw"
    for name in FASHION_MNIST_FILES:
        target, packaged = raw / name, source / f"{name}.gz"
        if not target.is_file() and packaged.is_file():
            with gzip.open(packaged) as f:
                _atomic_write(target, f.read())
    return all((raw / name).is_file() for name in FASHION_MNIST_FILES)


def read_fashion_mnist(root: Path, train: bool, download: bool | None) -> RawImages:
    """Fashion-MNIST, 28x28 grey, served as 32x32: zero-padded by 2 pixels (repeated to 3 channels later)."""
    install_debian_fashion_mnist(root)
    how = (
        "Offline on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (the files are then found in "
        f"{DEBIAN_FASHION_MNIST_DIR}); or put the four files {', '.join(FASHION_MNIST_FILES)} (decompressed) in "
        f"{root / 'FashionMNIST' / 'raw'}; or, with internet, call with download=True."
    )
    ds = _open_or_download(
        lambda d: torchvision.datasets.FashionMNIST(str(root), train=train, download=d), download, "Fashion-MNIST", how
    )
    images = F.pad(ds.data, (2, 2, 2, 2)).unsqueeze(1)
    return RawImages(images, ds.targets.long(), tuple(ds.classes))


def _read_cifar(cls: type, folder: str, archive: str, root: Path, train: bool, download: bool | None) -> RawImages:
    how = (
        f"Download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it in {root} "
        f"(giving {root / folder}); or, with internet, call with download=True."
    )
    ds = _open_or_download(lambda d: cls(str(root), train=train, download=d), download, cls.__name__, how)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return RawImages(images, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes))


def read_cifar10(root: Path, train: bool, download: bool | None) -> RawImages:
    """CIFAR-10 (32x32x3) from ``<root>/cifar-10-batches-py``."""
    return _read_cifar(torchvision.datasets.CIFAR10, "cifar-10-batches-py", "cifar-10-python.tar.gz", root, train, download)


def read_cifar100(root: Path, train: bool, download: bool | None) -> RawImages:
    """CIFAR-100 (32x32x3, fine labels) from ``<root>/cifar-100-python``."""
    return _read_cifar(torchvision.datasets.CIFAR100, "cifar-100-python", "cifar-100-python.tar.gz", root, train, download)


def read_stl10(root: Path, train: bool, download: bool | None) -> RawImages:
    """STL-10's labelled split (5,000 train / 8,000 test, 96x96x3), resized to 32x32 as the paper does for transfer."""
    how = (
        f"Download stl10_binary.tar.gz from {torchvision.datasets.STL10.url} and extract it in {root} "
        f"(giving {root / 'stl10_binary'}); or, with internet, call with download=True."
    )
    split = "train" if train else "test"
    ds = _open_or_download(
        lambda d: torchvision.datasets.STL10(str(root), split=split, download=d), download, "STL-10", how
    )
    classes = tuple(getattr(ds, "classes", STL10_CLASSES))  # from class_names.txt where present
    return RawImages(_resize(torch.from_numpy(ds.data)), torch.from_numpy(ds.labels).long(), classes)


# ----------------------------------------------------------------------------- Tiny ImageNet-200


def _tiny_imagenet_dir(root: Path, download: bool | None) -> Path:
    base = root / "tiny-imagenet-200"
    how = (
        f"Download {TINY_IMAGENET_URL} and unzip it in {root} (giving {base}/wnids.txt, train/, val/); "
        "or, with internet, call with download=True."
    )

    def open_(download_now: bool) -> Path:
        if download_now and not (base / "wnids.txt").is_file():
            torchvision.datasets.utils.download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
        if not (base / "wnids.txt").is_file():
            raise RuntimeError(f"{base / 'wnids.txt'} not found")
        return base

    return _open_or_download(open_, download, "Tiny ImageNet-200", how)


def organize_tiny_imagenet_val(base: Path) -> None:
    """Move ``val/images/*.JPEG`` into ``val/<wnid>/images/`` using ``val/val_annotations.txt``.

    Idempotent: files already moved are left where they are, so an interrupted run can be resumed.
    """
    flat = base / "val" / "images"
    if not flat.is_dir():
        return
    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetNotFoundError(f"{annotations} is missing; unzip tiny-imagenet-200.zip again")
    for line in annotations.read_text().splitlines():
        if not line.strip():
            continue
        filename, wnid = line.split("\t")[:2]
        source = flat / filename
        if source.is_file():
            target = base / "val" / wnid / "images" / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))
    if not any(flat.iterdir()):
        flat.rmdir()


def _read_images_resized(paths: list[Path], chunk: int = 4096) -> Tensor:
    """(n, 3, 32, 32) uint8 from image files (grey files converted to RGB), resized a chunk at a time."""
    out = [torch.zeros((0, 3, SERVED_SIZE, SERVED_SIZE), dtype=torch.uint8)]
    for start in range(0, len(paths), chunk):
        arrays = []
        for path in paths[start : start + chunk]:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB")))
        out.append(_resize(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)))
    return torch.cat(out)


def read_tiny_imagenet(root: Path, train: bool, download: bool | None) -> RawImages:
    """Tiny ImageNet-200 (100,000 train / 10,000 val images, 64x64x3) resized to 32x32.

    Labels follow the order of ``wnids.txt``; class names come from ``words.txt`` where present.
    The labelled validation set serves as the test split (the official test split has no labels).
    """
    base = _tiny_imagenet_dir(root, download)
    wnids = [w.strip() for w in (base / "wnids.txt").read_text().splitlines() if w.strip()]
    words = {}
    if (base / "words.txt").is_file():
        for line in (base / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.strip()
    if not train:
        organize_tiny_imagenet_val(base)
    split = base / ("train" if train else "val")
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        files = sorted((split / wnid / "images").glob("*.JPEG"))
        if not files:
            raise DatasetNotFoundError(f"no images in {split / wnid / 'images'}; the Tiny ImageNet folder is incomplete")
        paths += files
        labels += [label] * len(files)
    images = _read_images_resized(paths)
    return RawImages(images, torch.tensor(labels, dtype=torch.long), tuple(words.get(w, w) for w in wnids))


READERS: dict[str, Callable[[Path, bool, bool | None], RawImages]] = {
    "fashion_mnist": read_fashion_mnist,
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "stl10": read_stl10,
    "tiny_imagenet": read_tiny_imagenet,
}
