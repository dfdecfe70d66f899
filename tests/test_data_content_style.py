"""The content/style dataset: rendering formula, interventions, spurious correlation, determinism.

Most tests use scikit-learn's digits as content (always available, 1,438 train / 359 test images);
one checks the Fashion-MNIST content where the Debian package's files are installed.
"""
from __future__ import annotations

import math
from urllib.error import URLError

import pytest
import torch
import torchvision
from sklearn.datasets import load_digits

from icd_lib.data import PALETTE, STYLE_KEYS, ContentStyleDataset, dataset_info, denormalize, load_dataset
from icd_lib.data import sources

INFO = dataset_info("content_style")


@pytest.fixture(scope="module")
def digits_train():
    return ContentStyleDataset(content="digits", train=True, style_mode="spurious", spurious_strength=0.9).with_augment(False)


def pixels(dataset, image):
    """A normalised (3, 32, 32) image back to [0, 1]."""
    return denormalize(image[None], dataset.mean, dataset.std)[0]


def flat_style(**changes):
    style = {"foreground": (1.0, 1.0, 1.0), "background": (0.0, 0.0, 0.0), "texture_amplitude": 0.0,
             "texture_period": 5.0, "texture_angle": 0.0, "scale": 1.0, "shift": (0.0, 0.0)}
    style.update(changes)
    return style


def unmix(dataset, image, style):
    """alpha from image = alpha * fg + (1 - alpha) * bg on a flat background, using the channel where fg and bg differ most."""
    fg, bg = torch.tensor(style["foreground"]), torch.tensor(style["background"])
    c = int((fg - bg).abs().argmax())
    return (pixels(dataset, image)[c] - bg[c]) / (fg[c] - bg[c])


def test_items_and_splits(digits_train):
    image, label, index = digits_train[11]
    assert image.shape == (3, 32, 32) and (label, index) == (int(digits_train.labels[11]), 11)
    test = ContentStyleDataset(content="digits", train=False)
    assert (len(digits_train), len(test)) == (1438, 359)
    per_class = torch.bincount(torch.tensor(load_digits().target))
    assert ((test.class_counts() - per_class * 359 / 1797).abs() < 1).all()  # a stratified 20% test split
    assert digits_train.class_names == tuple("0123456789") and not test.augment
    assert ContentStyleDataset(content="digits", train=True).augment  # augment defaults to train


def test_plain_white_on_black_render_is_the_content_padded_by_two(digits_train):
    """scale 1, no shift: the 28x28 content lands on the canvas pixel for pixel, 2 pixels from each edge."""
    image = pixels(digits_train, digits_train.render(4, flat_style()))
    expected = torch.zeros(32, 32)
    expected[2:30, 2:30] = digits_train.content[4].float() / 255
    for c in range(3):
        torch.testing.assert_close(image[c], expected, atol=1e-5, rtol=0)


def test_shift_moves_the_object_by_whole_pixels(digits_train):
    base = unmix(digits_train, digits_train.render(9, flat_style(scale=0.8)), flat_style())
    moved = unmix(digits_train, digits_train.render(9, flat_style(scale=0.8, shift=(3.0, -2.0))), flat_style())
    torch.testing.assert_close(moved[:-2, 3:], base[2:, :-3], atol=1.01 / 255, rtol=0)  # 3 columns right, 2 rows up


def test_texture_follows_its_formula_where_there_is_no_object(digits_train):
    style = flat_style(background=(0.2, 0.3, 0.25), texture_amplitude=0.12, texture_period=4.5, texture_angle=0.7, scale=0.8)
    image = pixels(digits_train, digits_train.render(0, style))
    for v, u in [(0, 0), (0, 31), (31, 0), (31, 31), (1, 2), (2, 30)]:  # corners: outside the 22-pixel object
        wave = 0.12 * math.sin(2 * math.pi * ((u + 0.5) * math.cos(0.7) + (v + 0.5) * math.sin(0.7)) / 4.5)
        expected = torch.tensor(style["background"]) + wave
        torch.testing.assert_close(image[:, v, u], expected, atol=0.6 / 255, rtol=0)


def test_intervention_on_colours_keeps_the_content_mask(digits_train):
    index = 17
    own = digits_train.style_of(index)
    new = {"foreground": tuple(PALETTE[(PALETTE - torch.tensor(own["foreground"])).abs().sum(1).argmax()].tolist()),
           "background": (0.3, 0.16, 0.2), "texture_amplitude": 0.0}
    before = digits_train.render(index, {"texture_amplitude": 0.0})
    after = digits_train.render(index, new)
    assert not torch.equal(before, after)
    alpha_before = unmix(digits_train, before, {**own, "texture_amplitude": 0.0})
    alpha_after = unmix(digits_train, after, {**own, **new})
    torch.testing.assert_close(alpha_after, alpha_before, atol=0.02, rtol=0)
    assert alpha_before.max() > 0.9 and (alpha_before > 0.5).sum() > 20  # the object is there
    assert digits_train.style_of(index) == own  # rendering an intervention changes nothing stored


def test_render_without_style_is_the_stored_item(digits_train):
    for index in (0, 100, 1437):
        assert torch.equal(digits_train.render(index), digits_train[index][0])


def test_full_intervention_changes_style_not_label_or_content(digits_train):
    generator = torch.Generator().manual_seed(0)
    new_style = digits_train.sample_style(generator)
    assert set(new_style) == set(STYLE_KEYS)
    changed = digits_train.render(3, new_style)
    assert not torch.equal(changed, digits_train[3][0])
    assert digits_train[3][1] == int(digits_train.labels[3])
    alpha = unmix(digits_train, digits_train.render(3, {**new_style, "texture_amplitude": 0.0}), new_style)
    reference = unmix(digits_train, digits_train.render(3, flat_style(scale=new_style["scale"], shift=new_style["shift"])),
                      flat_style())
    torch.testing.assert_close(alpha, reference, atol=0.02, rtol=0)  # the same object, placed by the new geometry


def test_sampled_styles_are_in_range_and_reproducible(digits_train):
    styles = [digits_train.sample_style(torch.Generator().manual_seed(s)) for s in range(200)]
    assert digits_train.sample_style(torch.Generator().manual_seed(3)) == styles[3]
    for style in styles:
        assert any(torch.allclose(torch.tensor(style["foreground"]), colour) for colour in PALETTE)
        assert all(0.15 <= b <= 0.35 for b in style["background"])
        assert 0.8 <= style["scale"] <= 1.1 and 3 <= style["texture_period"] <= 10
        room = (32 - 28 * style["scale"]) / 2
        assert all(abs(s) <= room + 1e-6 for s in style["shift"])
    assert len({style["foreground"] for style in styles}) == len(PALETTE)


def colour_agreement(dataset) -> float:
    """Share of images whose foreground is their class's palette colour."""
    return (dataset.styles["foreground"] == PALETTE[dataset.labels]).all(dim=1).float().mean().item()


def test_spurious_split_is_correlated_and_random_split_is_not(digits_train):
    # binomial standard error with 1,438 images: 0.008 at p = 0.9; tolerances are about 4 of them
    assert abs(colour_agreement(digits_train) - 0.9) < 0.035
    random_split = ContentStyleDataset(content="digits", train=True, style_mode="random")
    assert abs(colour_agreement(random_split) - 0.1) < 0.035
    assert colour_agreement(ContentStyleDataset(content="digits", style_mode="spurious", spurious_strength=1.0)) == 1.0
    assert colour_agreement(ContentStyleDataset(content="digits", style_mode="spurious", spurious_strength=0.0)) == 0.0
    # the other style parameters stay independent of the class in both modes
    scale_by_class = [digits_train.styles["scale"][digits_train.labels == k].mean().item() for k in range(10)]
    assert max(scale_by_class) - min(scale_by_class) < 0.05


def test_deterministic_given_the_seed():
    a = ContentStyleDataset(content="digits", size=200, seed=5, style_mode="spurious")
    b = ContentStyleDataset(content="digits", size=200, seed=5, style_mode="spurious")
    c = ContentStyleDataset(content="digits", size=200, seed=6, style_mode="spurious")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert all(torch.equal(a.styles[k], b.styles[k]) for k in STYLE_KEYS)
    assert not torch.equal(a.images, c.images)
    assert a.class_counts().tolist() == [20] * 10
    test = ContentStyleDataset(content="digits", train=False, size=200, seed=5, style_mode="spurious")
    assert not torch.equal(a.styles["scale"], test.styles["scale"])  # train and test draw different styles


def test_reachable_through_load_dataset():
    ds = load_dataset("content_style", train=False, size=50, seed=1, content="digits", style_mode="spurious",
                      spurious_strength=0.5)
    assert isinstance(ds, ContentStyleDataset) and len(ds) == 50
    assert (ds.style_mode, ds.spurious_strength, ds.mean, ds.std) == ("spurious", 0.5, INFO.mean, INFO.std)


def test_bad_arguments_are_explained(digits_train):
    with pytest.raises(ValueError, match="valid: random, spurious"):
        ContentStyleDataset(content="digits", style_mode="correlated")
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        ContentStyleDataset(content="digits", spurious_strength=1.5)
    with pytest.raises(ValueError, match="valid: fashion_mnist, digits"):
        ContentStyleDataset(content="mnist")
    with pytest.raises(ValueError, match="unknown style keys"):
        digits_train.render(0, {"colour": (1, 0, 0)})
    with pytest.raises(ValueError, match="must hold 3 numbers"):
        digits_train.render(0, {"foreground": (1, 0)})


def test_falls_back_to_digits_when_fashion_mnist_is_missing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", refuse)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "none")
    monkeypatch.delenv(sources.SYSTEM_DATA_ENV, raising=False)
    with pytest.warns(UserWarning, match="digits as content"):
        ds = ContentStyleDataset(content="fashion_mnist", root=tmp_path, size=30)
    assert ds.class_names == tuple("0123456789") and ds.content_source == "digits"


@pytest.mark.parametrize("train, size, available, fashion", [(True, 1439, "1,438", "60,000"), (False, 500, "359", "10,000")])
def test_a_size_beyond_the_digits_fallback_is_one_clear_error(tmp_path, monkeypatch, train, size, available, fashion):
    """On a machine without Fashion-MNIST, a size the digits cannot give fails up front, saying what would."""
    monkeypatch.setenv(sources.SYSTEM_DATA_ENV, str(tmp_path / "no-system-data"))
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", _refuse_download)
    with pytest.warns(UserWarning, match="digits as content"), pytest.raises(ValueError) as err:
        ContentStyleDataset(content="fashion_mnist", train=train, size=size, root=tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message
    split = "train" if train else "test"
    assert f"size={size} exceeds the {available} {split} images" in message
    assert "fallback for the missing Fashion-MNIST" in message
    assert f"`sudo apt-get install dataset-fashion-mnist`) provides {fashion}" in message
    # the largest size the digits hold still works
    with pytest.warns(UserWarning, match="digits as content"):
        largest = int(available.replace(",", ""))
        assert len(ContentStyleDataset(content="fashion_mnist", train=train, size=largest, root=tmp_path / "data")) == largest


def test_a_size_beyond_the_chosen_digits_says_so():
    with pytest.raises(ValueError, match=r"size=2000 exceeds the 1,438 train images of its content, scikit-learn's digits;"):
        ContentStyleDataset(content="digits", train=True, size=2000)


def _refuse_download(*args, **kwargs):
    raise URLError("network disabled in tests")


@pytest.mark.needs("fashion_mnist")
def test_fashion_mnist_content(tmp_path):
    ds = ContentStyleDataset(content="fashion_mnist", train=False, size=100, root=tmp_path)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_counts().tolist() == [10] * 10
    image = pixels(ds, ds.render(0, flat_style()))
    expected = torch.zeros(32, 32)
    expected[2:30, 2:30] = ds.content[0].float() / 255
    torch.testing.assert_close(image[1], expected, atol=1e-5, rtol=0)


def test_the_styled_transfer_digits_are_the_digits_in_random_style():
    from icd_lib.data.transfer import styled_transfer_digits, transfer_digits

    grey, styled = transfer_digits(False, "fashion_mnist"), styled_transfer_digits(False, "fashion_mnist")
    assert len(grey) == len(styled) == 359 and torch.equal(grey.labels, styled.labels)
    assert styled.images.shape[1:] == (3, 32, 32) and grey.images.shape[1:] == (1, 32, 32)
    colours = styled.images.float().mean(dim=(2, 3))  # (n, 3): a random foreground and background per image
    assert (colours.std(dim=0) > 5).all()
    assert torch.equal(styled.images, styled_transfer_digits(False, "fashion_mnist").images)  # fixed styles
