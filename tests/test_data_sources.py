"""Loaders of the downloadable datasets, on small files written here in each dataset's real on-disk format.

torchvision checks CIFAR's and STL-10's files against the MD5 sums of the real ones; the small
files written here cannot match them, so the fixture ``accept_any_checksum`` replaces only that
check by a presence check (in the torchvision modules that call it). Everything else - finding the
files, unpickling, reading the binary layout - is torchvision's real code. Fashion-MNIST's raw
files carry no checksum and need no bypass. Downloads are disabled: any attempt fails at once, as
on a machine without internet.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from icd_lib.data import DatasetNotFoundError, data_root, dataset_info, load_dataset
from icd_lib.data import sources
from icd_lib.data.info import CIFAR100_CLASSES, DATASETS

REAL_DEBIAN_DIR = sources.debian_fashion_mnist_dir()  # where this machine has the package (or not)


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """No downloads and no Debian files unless a test puts them somewhere."""

    def refuse(*args, **kwargs):
        raise URLError("network disabled in tests")

    for module in (torchvision.datasets.utils, torchvision.datasets.cifar, torchvision.datasets.mnist,
                   torchvision.datasets.stl10):
        monkeypatch.setattr(module, "download_and_extract_archive", refuse)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    monkeypatch.delenv(sources.SYSTEM_DATA_ENV, raising=False)


@pytest.fixture
def accept_any_checksum(monkeypatch):
    real = torchvision.datasets.utils.check_integrity
    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10):
        monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: real(fpath))


# ------------------------------------------------------------------------------------- writers


def pattern_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) uint8 with random pixels: any mix-up of axes or channels shows."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar100(root: Path, train_images, train_labels, test_images, test_labels) -> None:
    """cifar-100-python/{train,test,meta}: pickled dicts, rows of 3072 bytes (R plane, G plane, B plane)."""
    folder = root / "cifar-100-python"
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        write_pickle(folder / split, {
            "filenames": [f"img_{i}.png" for i in range(len(labels))],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": list(labels),
            "coarse_labels": [label // 5 for label in labels],
            "data": images.reshape(len(images), -1),
        })
    write_pickle(folder / "meta", {"fine_label_names": list(CIFAR100_CLASSES),
                                   "coarse_label_names": [f"super{i}" for i in range(20)]})


def write_cifar10(root: Path, images, labels) -> None:
    """cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta; the train images split over 5 batches."""
    folder = root / "cifar-10-batches-py"
    parts = np.array_split(np.arange(len(labels)), 5)
    for b, part in enumerate(parts, start=1):
        write_pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5",
                                                   "labels": [int(labels[i]) for i in part],
                                                   "data": images[part].reshape(len(part), -1),
                                                   "filenames": [f"{i}.png" for i in part]})
    write_pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": [int(x) for x in labels[:4]],
                                         "data": images[:4].reshape(4, -1), "filenames": ["t.png"] * 4})
    write_pickle(folder / "batches.meta", {"label_names": list(dataset_info("cifar10").class_names),
                                           "num_cases_per_batch": 10, "num_vis": 3072})


def write_stl10(root: Path, train_images, train_labels, test_images, test_labels) -> None:
    """stl10_binary/*.bin: raw uint8, each image stored channel by channel, column-major; labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        images.transpose(0, 1, 3, 2).astype(np.uint8).tofile(folder / f"{split}_X.bin")
        (np.asarray(labels) + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
    np.zeros((1, 3, 96, 96), np.uint8).tofile(folder / "unlabeled_X.bin")
    (folder / "class_names.txt").write_text("\n".join(dataset_info("stl10").class_names) + "\n")


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """The idx format of (Fashion-)MNIST: magic (0, 0, 8 = uint8, ndim), big-endian dims, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist_gz(folder: Path, train_images, train_labels, test_images, test_labels) -> None:
    for prefix, images, labels in (("train", train_images, train_labels), ("t10k", test_images, test_labels)):
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels))


TINY_COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]


def write_tiny_imagenet(root: Path, wnids=("n02", "n01", "n03"), per_class=3, val_per_class=2) -> Path:
    """tiny-imagenet-200/: wnids.txt, words.txt, train/<wnid>/images/*.JPEG (+ boxes), val/images + annotations.

    Every image of the k-th wnid (in wnids.txt order) is a flat 64x64 colour TINY_COLOURS[k].
    """
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing number {w[-1]}, other name\n" for w in wnids) + "n99\tunused\n")
    annotations = []
    for k, wnid in enumerate(wnids):
        image = Image.new("RGB", (64, 64), TINY_COLOURS[k])
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(per_class):
            image.save(folder / f"{wnid}_{i}.JPEG", quality=95)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(val_per_class):
            name = f"val_{k * val_per_class + i}.JPEG"
            image.convert("L" if i == 0 else "RGB").save(base / "val" / "images" / name, quality=95)
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(annotations))
    return base


# ----------------------------------------------------------------------------------------- tests


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ICD_DATA", raising=False)
    repo = Path(__file__).resolve().parents[1]
    assert data_root() == repo / "data"  # these tests run from a checkout
    monkeypatch.setenv("ICD_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"


@pytest.mark.parametrize("marker", [".git", "_config.yml"])
def test_data_root_is_the_checkouts_data_folder(monkeypatch, tmp_path, marker):
    checkout = tmp_path / "icd-book"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("[project]\n")
    (checkout / marker).mkdir() if marker == ".git" else (checkout / marker).write_text("title: x\n")
    monkeypatch.setattr(sources, "PACKAGE_PARENT", checkout)
    monkeypatch.delenv("ICD_DATA", raising=False)
    assert sources.checkout_root() == checkout and data_root() == checkout / "data"
    monkeypatch.setenv("ICD_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"  # $ICD_DATA overrides the checkout


def test_data_root_of_an_installed_package_is_the_user_cache(monkeypatch, tmp_path):
    site_packages = tmp_path / "lib" / "python3" / "site-packages"
    site_packages.mkdir(parents=True)
    (site_packages / "pyproject.toml").write_text("")  # not enough without .git or _config.yml
    monkeypatch.setattr(sources, "PACKAGE_PARENT", site_packages)
    monkeypatch.delenv("ICD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert sources.checkout_root() is None
    assert data_root() == tmp_path / "home" / ".cache" / "icd_lib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "icd_lib"
    monkeypatch.setenv("ICD_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"  # $ICD_DATA overrides the cache


def test_installed_copy_of_the_package_keeps_data_out_of_site_packages(tmp_path):
    """The real layout of ``pip install git+...``: icd_lib/ alone in a folder of packages."""
    site_packages = tmp_path / "site-packages"
    shutil.copytree(Path(sources.__file__).parents[1], site_packages / "icd_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site_packages), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("ICD_DATA", None)
    code = "import icd_lib.data.sources as s; print(s.__file__); print(s.data_root())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(str(site_packages)), out  # the copy was imported, not the checkout
    assert out[1] == str(tmp_path / "cache" / "icd_lib")


def test_system_data_env_moves_the_debian_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.SYSTEM_DATA_ENV, str(tmp_path / "datasets"))
    assert sources.debian_fashion_mnist_dir() == tmp_path / "datasets" / "fashion-mnist"
    write_fashion_mnist_gz(tmp_path / "datasets" / "fashion-mnist", np.zeros((10, 28, 28)), np.arange(10),
                           np.zeros((2, 28, 28)), [0, 1])
    assert len(load_dataset("fashion_mnist", train=False, root=tmp_path / "data", download=False)) == 2
    monkeypatch.delenv(sources.SYSTEM_DATA_ENV)
    assert sources.debian_fashion_mnist_dir() == sources.DEBIAN_FASHION_MNIST_DIR


def test_dataset_info_and_unknown_names():
    assert set(DATASETS) == {"fashion_mnist", "cifar10", "cifar100", "stl10", "tiny_imagenet", "content_style"}
    names = dataset_info("cifar100").class_names
    assert len(names) == 100 == len(set(names)) and list(names) == sorted(names)
    for name in DATASETS:
        info = dataset_info(name)
        assert (info.in_channels, info.image_size) == (3, 32)
        assert len(info.mean) == len(info.std) == 3
    with pytest.raises(ValueError, match="valid datasets: fashion_mnist, cifar10"):
        dataset_info("cifar1000")
    with pytest.raises(ValueError, match="valid datasets"):
        load_dataset("mnist", train=True)


def test_cifar100_pickles_are_read(tmp_path, accept_any_checksum):
    train, test = pattern_images(12, seed=1), pattern_images(5, seed=2)
    train_labels, test_labels = [3, 99, 0, 42] * 3, [7, 8, 9, 10, 11]
    write_cifar100(tmp_path, train, train_labels, test, test_labels)
    ds = load_dataset("cifar100", train=True, root=tmp_path, download=False).with_augment(False)
    assert len(ds) == 12 and ds.class_names == CIFAR100_CLASSES
    assert torch.equal(ds.images, torch.from_numpy(train))  # (N, 3, 32, 32): R, G, B planes in order
    mean, std = dataset_info("cifar100").mean, dataset_info("cifar100").std
    image, label, index = ds[5]
    assert (label, index) == (99, 5)
    expected = (torch.from_numpy(train[5]).double() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(image.double(), expected, atol=1e-6, rtol=0)
    test_ds = load_dataset("cifar100", train=False, root=tmp_path, download=False)
    assert test_ds.labels.tolist() == test_labels and not test_ds.augment


def test_cifar10_batches_are_read(tmp_path, accept_any_checksum):
    images, labels = pattern_images(10, seed=3), np.arange(10) % 10
    write_cifar10(tmp_path, images, labels)
    ds = load_dataset("cifar10", train=True, root=tmp_path, download=False)
    assert torch.equal(ds.images, torch.from_numpy(images)) and ds.labels.tolist() == labels.tolist()
    assert ds.class_names[0] == "airplane" and ds.augment
    assert len(load_dataset("cifar10", train=False, root=tmp_path, download=False)) == 4


def test_stl10_binary_is_read_and_resized(tmp_path, accept_any_checksum):
    def halves(n):
        """Channel 0: left half bright; channel 1: top half bright; channel 2: flat 77. Tells rows from columns."""
        images = np.zeros((n, 3, 96, 96), np.uint8)
        images[:, 0, :, :48] = 200
        images[:, 1, :48, :] = 150
        images[:, 2] = 77
        return images

    write_stl10(tmp_path, halves(4), [0, 9, 3, 3], halves(2), [1, 2])
    ds = load_dataset("stl10", train=True, root=tmp_path, download=False).with_augment(False)
    assert ds.images.shape == (4, 3, 32, 32)
    assert ds.labels.tolist() == [0, 9, 3, 3] and ds.class_names[7] == "monkey"
    img = ds.images[0].int()
    assert img[0, 20, 3] == 200 and img[0, 20, 28] == 0      # left/right kept (no transposition)
    assert img[1, 3, 20] == 150 and img[1, 28, 20] == 0      # top/bottom kept
    assert (img[2] == 77).all()
    assert load_dataset("stl10", train=False, root=tmp_path, download=False).labels.tolist() == [1, 2]


def test_tiny_imagenet_layout_val_reorganised_once(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    train = load_dataset("tiny_imagenet", train=True, root=tmp_path, download=False).with_augment(False)
    assert train.images.shape == (9, 3, 32, 32)
    assert train.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3  # the order of wnids.txt, not sorted
    assert train.class_names == ("thing number 2, other name", "thing number 1, other name", "thing number 3, other name")
    for label, colour in enumerate(TINY_COLOURS):
        mean_colour = train.images[train.labels == label].float().mean(dim=(0, 2, 3))
        torch.testing.assert_close(mean_colour, torch.tensor(colour, dtype=torch.float32), atol=4, rtol=0)

    val = load_dataset("tiny_imagenet", train=False, root=tmp_path, download=False)
    assert not (base / "val" / "images").exists()
    assert sorted(p.name for p in (base / "val" / "n01" / "images").iterdir()) == ["val_2.JPEG", "val_3.JPEG"]
    assert val.labels.tolist() == [0, 0, 1, 1, 2, 2]
    grey_val = val.images[0].float()  # saved as a grey JPEG: read as RGB with equal channels
    assert torch.allclose(grey_val[0], grey_val[1]) and torch.allclose(grey_val[1], grey_val[2])
    again = load_dataset("tiny_imagenet", train=False, root=tmp_path, download=False)
    assert torch.equal(again.images, val.images)


def test_tiny_imagenet_val_reorganisation_resumes_after_interruption(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    moved = base / "val" / "n02" / "images"
    moved.mkdir(parents=True)
    (base / "val" / "images" / "val_0.JPEG").rename(moved / "val_0.JPEG")  # as if killed after one move
    val = load_dataset("tiny_imagenet", train=False, root=tmp_path, download=False)
    assert val.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_fashion_mnist_from_debian_style_gz_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    debian = tmp_path / "debian"
    write_fashion_mnist_gz(debian, train, np.arange(20) % 10, test, [9, 8, 7, 6, 5, 4])
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", debian)
    root = tmp_path / "data"
    ds = load_dataset("fashion_mnist", train=True, root=root, download=False).with_augment(False)
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(sources.FASHION_MNIST_FILES)
    assert ds.images.shape == (20, 1, 32, 32) and ds.class_names[9] == "Ankle boot"
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(train))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (ds.images[:, 0][:, border] == 0).all()  # zero padding 28 -> 32

    image, label, _ = ds[3]
    info = dataset_info("fashion_mnist")
    assert image.shape == (3, 32, 32) and label == 3
    expected = (torch.from_numpy(train[3]).double() / 255 - info.mean[0]) / info.std[0]
    for c in range(3):  # the grey channel repeated
        torch.testing.assert_close(image[c, 2:30, 2:30].double(), expected, atol=1e-6, rtol=0)
    assert load_dataset("fashion_mnist", train=False, root=root, download=False).labels.tolist() == [9, 8, 7, 6, 5, 4]


@pytest.mark.parametrize(
    "name, hint",
    [
        ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
        ("cifar100", "cifar-100-python"),
        ("cifar10", "cifar-10-batches-py"),
        ("stl10", "stl10_binary"),
        ("tiny_imagenet", "tiny-imagenet-200.zip"),
    ],
)
@pytest.mark.parametrize("download", [False, None])
def test_missing_dataset_says_how_to_get_it(tmp_path, name, hint, download):
    with pytest.raises(DatasetNotFoundError, match="download=False" if download is False else "could not be downloaded") as err:
        load_dataset(name, train=True, root=tmp_path / "empty", download=download)
    assert hint in str(err.value) and str(tmp_path / "empty") in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def write_fashion_mnist_raw(root: Path, n_train=20, n_test=6) -> Path:
    """Decompressed Fashion-MNIST files in <root>/FashionMNIST/raw (as after a first use); returns that folder."""
    debian = root / "debian"
    rng = np.random.default_rng(0)
    write_fashion_mnist_gz(debian, rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
                           rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    assert sources.install_debian_fashion_mnist(root / "data", source=debian)
    return root / "data" / "FashionMNIST" / "raw"


CORRUPTIONS = {
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
    "header only": lambda data: data[: 4 + 4 * data[3]],  # magic, then one size per dimension
    "empty": lambda data: b"",
    "one byte too many": lambda data: data + b"\0",
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@pytest.mark.parametrize("download", [False, None])
def test_corrupt_fashion_mnist_file_is_named_in_one_line(tmp_path, name, corruption, download):
    """torchvision's reader fails on these with a bare AssertionError, a ValueError about offsets or
    "could not be downloaded"; the error names the file and says to delete it."""
    raw = write_fashion_mnist_raw(tmp_path)
    path = raw / name
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(sources.DatasetCorruptError) as err:
        load_dataset("fashion_mnist", train=False, root=tmp_path / "data", download=download)
    message = str(err.value)
    assert f"{path} is corrupt" in message and "delete it" in message and "\n" not in message
    assert isinstance(err.value, ValueError)
    assert len(load_dataset("fashion_mnist", train=True, root=tmp_path / "data", download=False)) == 20  # other split


def test_fashion_mnist_images_and_labels_that_disagree_in_count(tmp_path):
    raw = write_fashion_mnist_raw(tmp_path)
    write_idx_gz(tmp_path / "labels.gz", np.zeros(5))
    with gzip.open(tmp_path / "labels.gz") as f:
        (raw / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    with pytest.raises(sources.DatasetCorruptError, match="holds 6 images but .* holds 5 labels; delete both"):
        load_dataset("fashion_mnist", train=False, root=tmp_path / "data", download=False)


def test_labels_of_the_right_length_but_out_of_range_are_refused_when_the_dataset_loads(tmp_path):
    """Random bytes in a label file of the right size pass every size check; a label >= 10 would
    end training with torch's "Target 82 is out of bounds"."""
    raw = write_fashion_mnist_raw(tmp_path)
    labels = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = 82  # the header stays valid; the last label is no class of Fashion-MNIST's 10
    labels.write_bytes(bytes(data))
    with pytest.raises(sources.DatasetCorruptError) as err:
        load_dataset("fashion_mnist", train=False, root=tmp_path / "data", download=False)
    message = str(err.value)
    assert "outside 0..9 (such as 82)" in message and str(tmp_path / "data") in message and "delete" in message
    assert "\n" not in message
    assert len(load_dataset("fashion_mnist", train=True, root=tmp_path / "data", download=False)) == 20  # other split


def test_corrupt_debian_file_says_reinstall(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_fashion_mnist_gz(debian, np.zeros((2, 28, 28)), [0, 1], np.zeros((2, 28, 28)), [0, 1])
    packaged = debian / "t10k-images-idx3-ubyte.gz"
    packaged.write_bytes(packaged.read_bytes()[:30])  # a truncated gzip stream
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", debian)
    with pytest.raises(sources.DatasetCorruptError, match=r"t10k-images-idx3-ubyte.gz is corrupt .*--reinstall dataset-fashion-mnist"):
        load_dataset("fashion_mnist", train=False, root=tmp_path / "data", download=False)


@pytest.mark.parametrize("download", [False, None])
def test_corrupt_local_cifar_is_reported_as_corrupt_not_as_missing(tmp_path, download):
    """The files are there but fail torchvision's MD5 check: say so, and where, not "could not be downloaded"."""
    write_cifar100(tmp_path, pattern_images(4), [0, 1, 2, 3], pattern_images(2), [0, 1])
    with pytest.raises(sources.DatasetCorruptError) as err:
        load_dataset("cifar100", train=True, root=tmp_path, download=download)
    message = str(err.value)
    assert f"the files in {tmp_path / 'cifar-100-python'} are corrupt or incomplete" in message
    assert f"delete {tmp_path / 'cifar-100-python'}" in message and "could not be downloaded" not in message
    assert "\n" not in message


def test_corrupt_tiny_imagenet_image_is_named(tmp_path):
    base = write_tiny_imagenet(tmp_path)
    bad = base / "train" / "n01" / "images" / "n01_1.JPEG"
    bad.write_bytes(b"not a JPEG")
    with pytest.raises(sources.DatasetCorruptError, match=f"{bad} is corrupt"):
        load_dataset("tiny_imagenet", train=True, root=tmp_path, download=False)


def test_size_gives_a_stratified_subset_of_a_real_format(tmp_path, accept_any_checksum):
    labels = [i % 10 for i in range(60)]
    write_cifar100(tmp_path, pattern_images(60), labels, pattern_images(2), [0, 1])
    ds = load_dataset("cifar100", train=True, root=tmp_path, download=False, size=20, seed=4)
    assert ds.class_counts()[:10].tolist() == [2] * 10 and ds.class_counts()[10:].sum() == 0
    assert [ds[i][2] for i in range(len(ds))] == list(range(20))  # the index is the position in the subset


def test_normalize_like_uses_the_other_datasets_statistics(tmp_path, accept_any_checksum):
    write_stl10(tmp_path, np.zeros((2, 3, 96, 96), np.uint8), [0, 1], np.zeros((1, 3, 96, 96), np.uint8), [0])
    ds = load_dataset("stl10", train=False, root=tmp_path, download=False, normalize_like="cifar100")
    mean, std = dataset_info("cifar100").mean, dataset_info("cifar100").std
    assert torch.allclose(ds[0][0][:, 0, 0], -torch.tensor(mean) / torch.tensor(std))
    with pytest.raises(TypeError, match="content_style only"):
        load_dataset("stl10", train=False, root=tmp_path, download=False, style_mode="random")


@pytest.mark.slow
@pytest.mark.needs("fashion_mnist")
def test_real_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", REAL_DEBIAN_DIR)
    train = load_dataset("fashion_mnist", train=True, root=tmp_path, download=False)
    test = load_dataset("fashion_mnist", train=False, root=tmp_path, download=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.class_counts().tolist() == [6_000] * 10 and test.class_counts().tolist() == [1_000] * 10
    raw = train.images[:, :, 2:30, 2:30].double() / 255
    assert abs(raw.mean().item() - 0.2860) < 5e-4
    served = train.images.double() / 255  # the published normalisation constants are those of the served 32x32 images
    info = dataset_info("fashion_mnist")
    assert abs(served.mean().item() - info.mean[0]) < 5e-4 and abs(served.std().item() - info.std[0]) < 5e-4
    assert os.path.getsize(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") == 16 + 60_000 * 784
