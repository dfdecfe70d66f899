"""Where the images come from: files on disk, the Debian package, or a download.

Every reader returns :class:`RawImages`: uint8 images at the served 32x32 size, labels and class
names. torchvision's own classes read CIFAR-10/100, STL-10 and Fashion-MNIST (their download code
included); Tiny ImageNet-200 is read from the layout of its zip. A dataset that is missing and
cannot be downloaded raises :class:`DatasetNotFoundError`, which says how to get it; a file
that is there but unreadable (truncated, overwritten) raises :class:`DatasetCorruptError`, which
names the file and says to delete it.

Where the files live (:func:`data_root`): ``root=`` if given, else ``$ICD_DATA``, else the
repository's ``data/`` when ``icd_lib`` runs from a checkout, else the user cache folder
``$XDG_CACHE_HOME/icd_lib`` (``~/.cache/icd_lib``), e.g. after ``pip install git+...``. The
Debian package ``dataset-fashion-mnist`` is looked for in ``/usr/share/datasets/fashion-mnist``,
or in ``$ICD_SYSTEM_DATA/fashion-mnist`` where that variable is set (tests point it at an empty
folder to play a machine without the package).
"""
from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
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
from icd_lib.errors import InputError, UserError
from icd_lib.utils import atomic_write

DATA_ENV = "ICD_DATA"
SYSTEM_DATA_ENV = "ICD_SYSTEM_DATA"
CACHE_DIR_NAME = "icd_lib"
SERVED_SIZE = 32
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The folder that holds icd_lib/: a checkout of the repository, or site-packages when installed.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset's files are missing and could not be downloaded; the message says how to get them."""


class DatasetCorruptError(InputError):
    """A dataset's file is there but cannot be read (truncated, overwritten); the message names it."""


class RawImages(NamedTuple):
    """images: (n, c, 32, 32) uint8 (c = 1 for grey sources); labels: (n,) int64."""

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]


def checkout_root() -> Path | None:
    """The repository ``icd_lib`` runs from (its folder holds ``pyproject.toml`` and ``.git`` or
    ``_config.yml``), or None when it is installed as a package (e.g. in site-packages)."""
    parent = PACKAGE_PARENT
    if (parent / "pyproject.toml").is_file() and ((parent / ".git").exists() or (parent / "_config.yml").is_file()):
        return parent
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/icd_lib``, or ``~/.cache/icd_lib`` where XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / CACHE_DIR_NAME


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$ICD_DATA``, else the repository's ``data/`` (in a checkout), else
    :func:`user_cache_dir` (an installed package: never a folder inside the Python installation)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    checkout = checkout_root()
    return checkout / "data" if checkout is not None else user_cache_dir()


def debian_fashion_mnist_dir() -> Path:
    """Where the Debian package's Fashion-MNIST files are: ``$ICD_SYSTEM_DATA/fashion-mnist`` if set,
    else :data:`DEBIAN_FASHION_MNIST_DIR`."""
    if os.environ.get(SYSTEM_DATA_ENV):
        return Path(os.environ[SYSTEM_DATA_ENV]).expanduser() / "fashion-mnist"
    return DEBIAN_FASHION_MNIST_DIR


_T = TypeVar("_T")


def _has_files(folder: Path | None) -> bool:
    """Whether ``folder`` exists and holds at least one file (at any depth)."""
    return folder is not None and folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _corrupt(name: str, folder: Path, error: BaseException, how_to_get: str) -> DatasetCorruptError:
    return DatasetCorruptError(
        f"{name}: the files in {folder} are corrupt or incomplete ({_one_line(error)}); delete {folder} and get "
        f"them again. {how_to_get}"
    )


def _open_or_download(
    open_: Callable[[bool], _T], download: bool | None, name: str, how_to_get: str, folder: Path | None = None
) -> _T:
    """``open_(download)`` with the policy of :func:`load_dataset`: ``None`` downloads only if the files are missing.

    ``folder``: where the dataset's files are expected. When files are there but cannot be read
    (and no download replaced them), the error is a :class:`DatasetCorruptError` naming the
    folder, not "not found" or "could not be downloaded".
    """
    local_error = None
    if download is not True:
        try:
            return open_(False)
        except RuntimeError as missing:  # torchvision: "Dataset not found or corrupted"
            if _has_files(folder):
                local_error = missing
                if download is False:
                    raise _corrupt(name, folder, missing, how_to_get) from missing
            elif download is False:
                raise DatasetNotFoundError(f"{name} not found (download=False). {how_to_get}") from missing
    try:
        return open_(True)
    except (OSError, RuntimeError) as failed:  # URLError is an OSError; a bad checksum a RuntimeError
        if local_error is not None or _has_files(folder):
            raise _corrupt(name, folder, local_error or failed, how_to_get) from failed
        raise DatasetNotFoundError(f"{name} could not be downloaded ({_one_line(failed)}). {how_to_get}") from failed


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


def install_debian_fashion_mnist(root: Path, source: Path | None = None) -> bool:
    """Decompress the Debian package's Fashion-MNIST files into ``<root>/FashionMNIST/raw/``.

    The package (``apt-get install dataset-fashion-mnist``) ships the four original files
    recompressed, so torchvision's MD5 check of the ``.gz`` files fails; the decompressed files
    are what torchvision reads. ``source`` defaults to :func:`debian_fashion_mnist_dir`. Does
    nothing where the files are already there. Returns whether Fashion-MNIST's raw files are now
    present. A packaged file that does not decompress raises :class:`DatasetCorruptError`.
    """
    source = debian_fashion_mnist_dir() if source is None else source
    raw = root / "FashionMNIST" / "raw"
    for name in FASHION_MNIST_FILES:
        target, packaged = raw / name, source / f"{name}.gz"
        if not target.is_file() and packaged.is_file():
            try:
                with gzip.open(packaged) as f:
                    data = f.read()
            except (OSError, EOFError) as bad:  # gzip.BadGzipFile is an OSError; a truncated file an EOFError
                raise DatasetCorruptError(
                    f"{packaged} is corrupt ({_one_line(bad)}); reinstall it: "
                    "`sudo apt-get install --reinstall dataset-fashion-mnist`"
                ) from bad
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(data),
                         f"the packaged {packaged.name} is intact, so rerunning repeats only this step")
    return all((raw / name).is_file() for name in FASHION_MNIST_FILES)


def check_idx_file(path: Path, item_shape: tuple[int, ...]) -> int:
    """The number of items in the (Fashion-)MNIST idx file ``path`` of uint8 items of ``item_shape``.

    The idx format: 4 magic bytes (0, 0, 8 = uint8, ndim), ndim big-endian uint32 sizes, then the
    bytes. A header that does not match, or a file size that disagrees with it, raises
    :class:`DatasetCorruptError` naming the file (torchvision's reader fails on such files with a
    bare AssertionError, or reads garbage).
    """
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    actual = path.stat().st_size

    def corrupt(why: str) -> DatasetCorruptError:
        return DatasetCorruptError(
            f"{path} is corrupt ({why}); delete it, and it is restored from the Debian package "
            "(`sudo apt-get install dataset-fashion-mnist`) or downloaded on the next use"
        )

    with open(path, "rb") as f:
        header = f.read(header_size)
    if len(header) < header_size:
        raise corrupt(f"{actual} bytes, shorter than the {header_size}-byte idx header")
    if header[:4] != bytes([0, 0, 8, ndim]):
        raise corrupt(f"not an idx file of {ndim}-d uint8 data: it starts with bytes {list(header[:4])}")
    count, *shape = struct.unpack(f">{ndim}I", header[4:])
    if tuple(shape) != item_shape:
        raise corrupt(f"items of shape {tuple(shape)}, expected {item_shape}")
    expected = header_size + count * math.prod(item_shape)
    if actual != expected:
        raise corrupt(f"{actual} bytes, but its header announces {count} items, {expected} bytes")
    return count


def check_fashion_mnist_files(raw: Path, train: bool) -> None:
    """Check the split's two decompressed files in ``raw`` (where present): well-formed, same count."""
    prefix = "train" if train else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    if not (images.is_file() and labels.is_file()):
        return
    n_images, n_labels = check_idx_file(images, (28, 28)), check_idx_file(labels, ())
    if n_images != n_labels:
        raise DatasetCorruptError(
            f"{images} holds {n_images} images but {labels} holds {n_labels} labels; delete both, and they are "
            "restored from the Debian package (`sudo apt-get install dataset-fashion-mnist`) or downloaded on the next use"
        )


def read_fashion_mnist(root: Path, train: bool, download: bool | None) -> RawImages:
    """Fashion-MNIST, 28x28 grey, served as 32x32: zero-padded by 2 pixels (repeated to 3 channels later)."""
    install_debian_fashion_mnist(root)
    raw = root / "FashionMNIST" / "raw"
    check_fashion_mnist_files(raw, train)
    how = (
        "Offline on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (the files are then found in "
        f"{debian_fashion_mnist_dir()}); or put the four files {', '.join(FASHION_MNIST_FILES)} (decompressed) in "
        f"{raw}; or run again where the internet is reachable (icd_lib downloads missing files itself)."
    )
    ds = _open_or_download(
        lambda d: torchvision.datasets.FashionMNIST(str(root), train=train, download=d), download, "Fashion-MNIST",
        how, folder=raw,
    )
    images = F.pad(ds.data, (2, 2, 2, 2)).unsqueeze(1)
    return RawImages(images, ds.targets.long(), tuple(ds.classes))


def _read_cifar(cls: type, folder: str, archive: str, root: Path, train: bool, download: bool | None) -> RawImages:
    how = (
        f"Download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it in {root} "
        f"(giving {root / folder}); or run again where the internet is reachable (icd_lib downloads missing files itself)."
    )
    ds = _open_or_download(
        lambda d: cls(str(root), train=train, download=d), download, cls.__name__, how, folder=root / folder
    )
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
        f"(giving {root / 'stl10_binary'}); or run again where the internet is reachable (icd_lib downloads missing files itself)."
    )
    split = "train" if train else "test"
    ds = _open_or_download(
        lambda d: torchvision.datasets.STL10(str(root), split=split, download=d), download, "STL-10", how,
        folder=root / "stl10_binary",
    )
    classes = tuple(getattr(ds, "classes", STL10_CLASSES))  # from class_names.txt where present
    return RawImages(_resize(torch.from_numpy(ds.data)), torch.from_numpy(ds.labels).long(), classes)


# ----------------------------------------------------------------------------- Tiny ImageNet-200


def _tiny_imagenet_dir(root: Path, download: bool | None) -> Path:
    base = root / "tiny-imagenet-200"
    how = (
        f"Download {TINY_IMAGENET_URL} and unzip it in {root} (giving {base}/wnids.txt, train/, val/); "
        "or run again where the internet is reachable (icd_lib downloads missing files itself)."
    )

    def open_(download_now: bool) -> Path:
        if download_now and not (base / "wnids.txt").is_file():
            torchvision.datasets.utils.download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
        if not (base / "wnids.txt").is_file():
            raise RuntimeError(f"{base / 'wnids.txt'} not found")
        return base

    return _open_or_download(open_, download, "Tiny ImageNet-200", how, folder=base)


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
            try:
                with Image.open(path) as image:
                    arrays.append(np.asarray(image.convert("RGB")))
            except OSError as bad:  # PIL.UnidentifiedImageError is an OSError; so is a truncated file
                raise DatasetCorruptError(f"{path} is corrupt ({bad}); delete it, or unzip tiny-imagenet-200.zip again") from bad
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
