"""A content/style dataset for the causal chapters: real objects, generated style with known parameters.

Content is a real grey image (Fashion-MNIST, or scikit-learn's 8x8 digits upscaled to 28x28
where Fashion-MNIST is missing); its class is the label. Style is drawn with known parameters
and rendered around it on a 32x32 RGB canvas:

    alpha   = the content placed at ``scale`` and ``shift`` (bilinear; 0 outside the object)
    bg(u,v) = background + texture_amplitude * sin(2 pi (u cos(angle) + v sin(angle)) / texture_period)
    image   = alpha * foreground + (1 - alpha) * bg            (per RGB channel, then to uint8)

with (u, v) the pixel centre in pixels (0.5 ... 31.5). Style keys, one value per image:
``foreground`` (r, g, b), one of :data:`PALETTE`; ``background`` (r, g, b) in [0.15, 0.35];
``texture_amplitude`` in [0, 0.15]; ``texture_period`` in [3, 10] pixels; ``texture_angle`` in
[0, pi); ``scale`` in [0.8, 1.1] (object size 28*scale pixels); ``shift`` (dx, dy) in pixels
(right, down), at most what keeps the object on the canvas.

``style_mode="random"``: every style parameter is independent of the class.
``style_mode="spurious"``: the foreground colour is the class's palette colour
(``PALETTE[label]``) with probability ``spurious_strength`` and one of the other palette colours,
uniformly, otherwise, so colour and class agree on a ``spurious_strength`` share of the images
(1/10 in random mode). Train on a spurious split and test on a random one to see a model lean
on colour instead of shape.
"""
from __future__ import annotations

import colorsys
import functools
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor

from icd_lib.errors import InputError
from icd_lib.data.images import ImageDataset, stratified_indices
from icd_lib.data.info import DIGITS_CLASSES, dataset_info
from icd_lib.data.seeds import derive_seed
from icd_lib.data.sources import DatasetNotFoundError, data_root, read_fashion_mnist
from icd_lib.data.transforms import normalize

CANVAS = 32
CONTENT_SIZE = 28
STYLE_MODES = ("random", "spurious")
CONTENT_SOURCES = ("fashion_mnist", "digits")
# Ten saturated, evenly spaced hues: foreground colour k is "the colour of class k" in spurious mode.
PALETTE = torch.tensor([colorsys.hsv_to_rgb(k / 10, 0.85, 1.0) for k in range(10)], dtype=torch.float32)
BACKGROUND_RANGE = (0.15, 0.35)
TEXTURE_AMPLITUDE_RANGE = (0.0, 0.15)
TEXTURE_PERIOD_RANGE = (3.0, 10.0)
SCALE_RANGE = (0.8, 1.1)
STYLE_KEYS = ("foreground", "background", "texture_amplitude", "texture_period", "texture_angle", "scale", "shift")
_STYLE_WIDTH = {"foreground": 3, "background": 3, "shift": 2}  # other keys hold one number
DIGITS_TEST_SHARE = 0.2
FASHION_MNIST_SIZES = {True: 60_000, False: 10_000}  # train, test

StyleTable = dict[str, Tensor]  # key -> (n,) or (n, width) float32


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(n, *shape, generator=generator)


def draw_styles(foreground_ids: Tensor, generator: torch.Generator | None = None) -> StyleTable:
    """Styles for n images whose foreground colours are ``PALETTE[foreground_ids]``; the rest drawn uniformly.

    foreground_ids: (n,) int in [0, 10). Returns a table of (n,) or (n, 3)/(n, 2) float32 tensors.
    """
    n = foreground_ids.shape[0]
    scale = _uniform(n, *SCALE_RANGE, generator)
    max_shift = (CANVAS - CONTENT_SIZE * scale) / 2  # keeps the scaled object on the canvas
    return {
        "foreground": PALETTE[foreground_ids],
        "background": _uniform(n, *BACKGROUND_RANGE, generator, 3),
        "texture_amplitude": _uniform(n, *TEXTURE_AMPLITUDE_RANGE, generator),
        "texture_period": _uniform(n, *TEXTURE_PERIOD_RANGE, generator),
        "texture_angle": _uniform(n, 0.0, math.pi, generator),
        "scale": scale,
        "shift": _uniform(n, -1.0, 1.0, generator, 2) * max_shift[:, None],
    }


def foreground_ids_for(labels: Tensor, style_mode: str, spurious_strength: float, generator: torch.Generator) -> Tensor:
    """(n,) palette index of each image's foreground colour under ``style_mode`` (see the module docstring)."""
    k = len(PALETTE)
    if style_mode == "random":
        return torch.randint(0, k, labels.shape, generator=generator)
    agrees = torch.rand(labels.shape, generator=generator) < spurious_strength
    other = (labels + torch.randint(1, k, labels.shape, generator=generator)) % k
    return torch.where(agrees, labels % k, other)


def render_images(content: Tensor, styles: StyleTable, chunk: int = 4096) -> Tensor:
    """Compose content and style (the formula of the module docstring), ``chunk`` images at a time.

    content: (n, 28, 28) uint8 grey objects; styles: a table of n styles. Returns (n, 3, 32, 32) uint8.
    """
    parts = [torch.zeros((0, 3, CANVAS, CANVAS), dtype=torch.uint8)]
    for start in range(0, content.shape[0], chunk):
        part = {key: value[start : start + chunk] for key, value in styles.items()}
        parts.append(_render(content[start : start + chunk], part))
    return torch.cat(parts)


def _render(content: Tensor, styles: StyleTable) -> Tensor:
    n = content.shape[0]
    scale, shift = styles["scale"], styles["shift"]
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: input = (16 * out - shift) / (14 * scale).
    half = CONTENT_SIZE / 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = (CANVAS / 2) / (half * scale)
    theta[:, :, 2] = -shift / (half * scale[:, None])
    grid = F.affine_grid(theta, [n, 1, CANVAS, CANVAS], align_corners=False)
    alpha = F.grid_sample(content[:, None].float() / 255, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    centres = torch.arange(CANVAS, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # v: row (y), u: column (x)
    angle = styles["texture_angle"][:, None, None]
    phase = (u * torch.cos(angle) + v * torch.sin(angle)) / styles["texture_period"][:, None, None]
    wave = styles["texture_amplitude"][:, None, None] * torch.sin(2 * math.pi * phase)  # (n, 32, 32)
    background = styles["background"][:, :, None, None] + wave[:, None]
    image = alpha * styles["foreground"][:, :, None, None] + (1 - alpha) * background
    return (image * 255).round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=2)
def _digits_content(train: bool) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 8x8 digits upscaled to 28x28 uint8; a fixed stratified 80/20 train/test split.

    Cached: callers must not modify the returned tensors in place.
    """
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16  # values 0..16
    images = F.interpolate(images, size=(CONTENT_SIZE, CONTENT_SIZE), mode="bilinear", align_corners=False)
    images = (images[:, 0] * 255).round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.long)
    test = torch.zeros(len(labels), dtype=torch.bool)
    test[stratified_indices(labels, round(DIGITS_TEST_SHARE * len(labels)), seed=0)] = True
    keep = ~test if train else test
    return images[keep], labels[keep]


def load_content(content: str, train: bool, root: Path, download: bool | None) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """(n, 28, 28) uint8 content images, (n,) labels and class names from ``content`` (see CONTENT_SOURCES).

    ``"fashion_mnist"`` falls back to the digits, with a warning, where Fashion-MNIST is missing.
    """
    if content not in CONTENT_SOURCES:
        raise InputError(f"unknown content {content!r}; valid: {', '.join(CONTENT_SOURCES)}")
    if content == "fashion_mnist":
        try:
            raw = read_fashion_mnist(root, train, download)
            return raw.images[:, 0, 2:-2, 2:-2].contiguous(), raw.labels, raw.class_names  # undo the 28 -> 32 padding
        except DatasetNotFoundError as missing:
            warnings.warn(f"{missing}\nUsing scikit-learn's 8x8 digits as content instead.", stacklevel=3)
    images, labels = _digits_content(train)
    return images.clone(), labels.clone(), DIGITS_CLASSES


class ContentStyleDataset(ImageDataset):
    """Real content under generated style; items ``(image (3, 32, 32) normalised, label, index)``.

    Deterministic given ``seed`` (which picks the ``size`` subset and draws the styles; train and
    test draw different styles). The training split is augmented with the paper's crop and flip
    (``with_augment`` switches it).
    ``size`` is at most the content's split: 60,000 train / 10,000 test images of Fashion-MNIST,
    1,438 / 359 of the digits (also where they stand in for a missing Fashion-MNIST); a larger one
    is a ValueError before anything is rendered. ``content_source`` says which content was used.
    """

    def __init__(
        self,
        content: str = "fashion_mnist",
        train: bool = True,
        size: int | None = None,
        style_mode: str = "random",
        spurious_strength: float = 0.9,
        seed: int = 0,
        root: str | Path | None = None,
        download: bool | None = None,
    ) -> None:
        if style_mode not in STYLE_MODES:
            raise InputError(f"unknown style_mode {style_mode!r}; valid: {', '.join(STYLE_MODES)}")
        if not 0.0 <= spurious_strength <= 1.0:
            raise InputError(f"spurious_strength is a probability in [0, 1], got {spurious_strength}")
        content_images, labels, class_names = load_content(content, train, data_root(root), download)
        self.content_source = "digits" if class_names == DIGITS_CLASSES else "fashion_mnist"
        if size is not None:
            _check_size(size, labels.shape[0], self.content_source, content, train)
            keep = stratified_indices(labels, size, seed)
            content_images, labels = content_images[keep], labels[keep]
        generator = torch.Generator().manual_seed(derive_seed(seed, int(train)))
        ids = foreground_ids_for(labels, style_mode, spurious_strength, generator)
        self.content = content_images
        self.styles = draw_styles(ids, generator)
        self.style_mode = style_mode
        self.spurious_strength = spurious_strength
        info = dataset_info("content_style")
        super().__init__(
            render_images(content_images, self.styles), labels, class_names, info.mean, info.std,
            augment=train, seed=seed,
        )

    def style_of(self, index: int) -> dict:
        """The style parameters of item ``index`` (tuples for colours and shift, floats otherwise)."""
        return _style_row(self.styles, int(index))

    def sample_style(self, generator: torch.Generator | None = None) -> dict:
        """A fresh style drawn as in random mode (independent of any class); default: torch's global generator."""
        ids = torch.randint(0, len(PALETTE), (1,), generator=generator)
        return _style_row(draw_styles(ids, generator), 0)

    def render(self, index: int, style: dict | None = None) -> Tensor:
        """Item ``index``'s content under its own style updated with ``style``: an intervention on style.

        ``style`` may give any subset of STYLE_KEYS (e.g. ``{"foreground": (1, 0, 0)}`` changes only the
        colour); None renders the item as stored. Returns (3, 32, 32) normalised, never augmented.
        """
        index = int(index)
        merged = self.style_of(index)
        if style:
            unknown = set(style) - set(STYLE_KEYS)
            if unknown:
                raise ValueError(f"unknown style keys {sorted(unknown)}; valid: {', '.join(STYLE_KEYS)}")
            merged.update(style)
        table = {key: torch.tensor([merged[key]], dtype=torch.float32) for key in STYLE_KEYS}
        for key, width in _STYLE_WIDTH.items():
            if table[key].shape != (1, width):
                raise ValueError(f"style[{key!r}] must hold {width} numbers, got {merged[key]!r}")
        image = render_images(self.content[index : index + 1], table)
        return normalize(image, self.mean, self.std)[0]


def _check_size(size: int, available: int, source: str, asked: str, train: bool) -> None:
    """A one-line ValueError, before any rendering, when ``size`` exceeds the content images there are."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= available:
        return  # stratified_indices reports sizes that are not positive ints
    split = "train" if train else "test"
    if source == "digits":
        what = "scikit-learn's digits" + (", the fallback for the missing Fashion-MNIST" if asked == "fashion_mnist" else "")
        fix = (
            f"Fashion-MNIST (`sudo apt-get install dataset-fashion-mnist`) provides {FASHION_MNIST_SIZES[train]:,}, "
            f"or ask for size <= {available}"
        )
    else:
        what, fix = "Fashion-MNIST", f"ask for size <= {available} (or size=None for all)"
    raise ValueError(
        f"ContentStyleDataset: size={size} exceeds the {available:,} {split} images of its content, {what}; {fix}"
    )


def _style_row(table: StyleTable, i: int) -> dict:
    return {
        key: tuple(table[key][i].tolist()) if key in _STYLE_WIDTH else float(table[key][i])
        for key in STYLE_KEYS
    }
