"""The paper's augmentation and normalisation, stratified subsets, and loaders reproducible per (seed, epoch)."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icd_lib.data import (
    ImageDataset,
    denormalize,
    derive_seed,
    make_loader,
    normalize,
    random_crop_flip,
    stratified_indices,
)


def all_crops(image: torch.Tensor, padding: int = 4) -> list[torch.Tensor]:
    """Every 32x32 crop of the zero-padded image, and its mirror: the 162 outputs the augmentation may give."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    crops = [padded[:, y : y + h, x : x + w] for y in range(2 * padding + 1) for x in range(2 * padding + 1)]
    return crops + [crop.flip(-1) for crop in crops]


def small_dataset(n: int = 40, augment: bool = True, seed: int = 0, classes: int = 4) -> ImageDataset:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    return ImageDataset(images, torch.arange(n) % classes, [f"c{k}" for k in range(classes)],
                        (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), augment=augment, seed=seed)


def test_crop_flip_outputs_are_crops_of_the_zero_padded_image():
    images = torch.randint(1, 256, (30, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding shows up as 0
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for image, result in zip(images, out):
        assert any(torch.equal(result, crop) for crop in all_crops(image))


def offset_of(line: torch.Tensor) -> int:
    """Crop offset (0..8) of a cropped line whose source held 1..32: a line starting at value v > 0 began at v - 1 + 4."""
    first = int(line[0])
    return first + 3 if first > 0 else 4 - int((line == 0).sum())


def test_crop_flip_covers_all_81_offsets_and_flips_half_the_time():
    n = 4000
    ramp = torch.arange(1, 33, dtype=torch.uint8)
    image = torch.stack([ramp.expand(32, 32), ramp[:, None].expand(32, 32)])  # channel 0: column + 1; channel 1: row + 1
    out = random_crop_flip(image.expand(n, 2, 32, 32).contiguous(), torch.Generator().manual_seed(1))
    columns, rows = out[:, 0, 16], out[:, 1, :, 16]
    flipped = columns[:, 10] < columns[:, 9]
    columns = torch.where(flipped[:, None], columns.flip(-1), columns)
    pairs = [(offset_of(r), offset_of(c)) for r, c in zip(rows, columns)]
    assert set(pairs) == set(itertools.product(range(9), range(9)))
    assert abs(flipped.float().mean().item() - 0.5) < 0.04
    assert not rows.diff(dim=1).lt(0).any()  # never flipped vertically


def test_normalize_and_denormalize_by_hand():
    images = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)  # one grey 2x2 image
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    out = normalize(images, mean, std)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    for c in range(3):
        expected = torch.tensor([[0.0, 1.0], [0.2, 0.4]]).sub(mean[c]).div(std[c])
        torch.testing.assert_close(out[0, c], expected)
    torch.testing.assert_close(denormalize(out, mean, std)[0, 1], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    with pytest.raises(TypeError, match="uint8"):
        normalize(images.float(), mean, std)
    with pytest.raises(ValueError, match="channels"):
        normalize(torch.zeros(1, 2, 2, 2, dtype=torch.uint8), mean, std)


def test_items_are_image_label_index_and_augment_only_when_asked():
    plain, augmented = small_dataset(augment=False), small_dataset(augment=True)
    image, label, index = plain[7]
    assert image.shape == (3, 32, 32) and (label, index) == (3, 7)
    assert isinstance(label, int) and isinstance(index, int)
    torch.testing.assert_close(denormalize(image[None], plain.mean, plain.std)[0] * 255, plain.images[7].float(), atol=1e-3, rtol=0)
    assert torch.equal(plain[7][0], plain[7][0])
    draws = [augmented[7][0] for _ in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    lowest = min((0 - m) / s for m, s in zip(plain.mean, plain.std))
    highest = max((1 - m) / s for m, s in zip(plain.mean, plain.std))
    assert all(lowest - 1e-6 <= d.min() and d.max() <= highest + 1e-6 for d in draws)
    assert plain[-1][2] == 39
    with pytest.raises(IndexError, match="out of range"):
        plain[40]


def test_dataset_rejects_bad_arrays():
    with pytest.raises(TypeError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2), ["a"], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="labels must have shape"):
        ImageDataset(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3), ["a"], (0.5,) * 3, (0.5,) * 3)


def test_stratified_subset_keeps_class_shares():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    chosen = stratified_indices(labels, 100, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [50, 30, 20]
    assert torch.equal(chosen, stratified_indices(labels, 100, seed=0))
    assert not torch.equal(chosen, stratified_indices(labels, 100, seed=1))
    with pytest.raises(ValueError, match="exceeds the 1000 items"):
        stratified_indices(labels, 1001)
    with pytest.raises(ValueError, match="positive int"):
        stratified_indices(labels, 0)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=8), fraction=st.floats(0.01, 1.0), seed=st.integers(0, 99))
def test_stratified_subset_properties(counts, fraction, seed):
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])[torch.randperm(sum(counts))]
    size = max(1, round(fraction * len(labels)))
    chosen = stratified_indices(labels, size, seed)
    assert chosen.numel() == size == chosen.unique().numel()
    assert torch.equal(chosen, chosen.sort().values)
    got = torch.bincount(labels[chosen], minlength=len(counts)).double()
    exact = torch.tensor(counts, dtype=torch.double) * size / len(labels)
    assert ((got - exact).abs() < 1).all()


def epoch_batches(loader):
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_train_loader_shuffles_per_epoch_and_a_fresh_loader_reproduces_any_epoch():
    dataset = small_dataset(n=50)
    loader = make_loader(dataset, batch_size=8, train=True, seed=3)
    epochs = [epoch_batches(loader) for _ in range(3)]
    orders = [torch.cat([i for _, _, i in batches]) for batches in epochs]
    for order in orders:
        assert sorted(order.tolist()) == list(range(50))  # every item once (the 2 left over form a last batch)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])

    resumed = make_loader(small_dataset(n=50), batch_size=8, train=True, seed=3)
    resumed.set_epoch(2)
    for (x, y, i), (x2, y2, i2) in zip(epochs[2], epoch_batches(resumed), strict=True):
        assert torch.equal(i, i2) and torch.equal(y, y2) and torch.equal(x, x2)  # same order, same crops
    for x, y, i in epochs[0]:
        torch.testing.assert_close(y, dataset.labels[i])

    other_seed = make_loader(small_dataset(n=50), batch_size=8, train=True, seed=4)
    assert not torch.equal(torch.cat([i for _, _, i in epoch_batches(other_seed)]), orders[0])


def test_epoch_order_is_the_seeded_permutation():
    loader = make_loader(small_dataset(n=20), batch_size=20, train=True, seed=5)
    loader.set_epoch(7)
    _, _, indices = next(iter(loader))
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(derive_seed(5, 7)))
    assert torch.equal(indices, expected)


def test_workers_reproduce_the_same_epoch():
    runs = []
    for _ in range(2):
        loader = make_loader(small_dataset(n=48), batch_size=8, train=True, seed=1, num_workers=2)
        loader.set_epoch(1)
        runs.append(epoch_batches(loader))
    for (x, _, i), (x2, _, i2) in zip(*runs, strict=True):
        assert torch.equal(i, i2) and torch.equal(x, x2)


def test_workers_draw_different_augmentations():
    """Identical images: batches from worker 0 and worker 1 differ only if the workers' random streams differ."""
    dataset = small_dataset(n=16)
    dataset.images[:] = dataset.images[0]
    loader = make_loader(dataset, batch_size=8, train=True, num_workers=2)
    first, second = [x for x, _, _ in loader]
    assert not torch.equal(first, second)


def test_eval_loader_is_in_order_without_augmentation():
    dataset = small_dataset(n=21, augment=False)
    loader = make_loader(dataset, batch_size=5, train=False)
    batches = epoch_batches(loader)
    assert torch.equal(torch.cat([i for _, _, i in batches]), torch.arange(21))
    assert [len(i) for _, _, i in batches] == [5, 5, 5, 5, 1]
    assert torch.equal(torch.cat([x for x, _, _ in batches]), normalize(dataset.images, dataset.mean, dataset.std))


@pytest.mark.parametrize("n, batch, train, expected_batches", [(21, 5, True, 4), (22, 5, True, 5), (21, 5, False, 5)])
def test_drop_last_default_drops_only_a_single_image_training_batch(n, batch, train, expected_batches):
    loader = make_loader(small_dataset(n=n), batch_size=batch, train=train)
    assert len(loader) == expected_batches == len(epoch_batches(loader))


def test_make_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(small_dataset(), batch_size=0, train=True)
    with pytest.raises(ValueError, match="epoch"):
        make_loader(small_dataset(), batch_size=4, train=True).set_epoch(-1)


def test_derive_seed_depends_on_every_part():
    seeds = {derive_seed(a, b) for a, b in itertools.product(range(10), range(10))}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)


def test_with_augment_switches_crop_and_flip_without_touching_the_original():
    images = torch.randint(1, 256, (6, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    augmented = ImageDataset(images, torch.arange(6) % 2, ["a", "b"], (0.5,) * 3, (0.25,) * 3, augment=True)
    plain = augmented.with_augment(False)
    assert augmented.augment and not plain.augment and plain.images is augmented.images
    expected = (images.float() / 255 - 0.5) / 0.25  # ToTensor then Normalize, written out
    torch.testing.assert_close(torch.stack([plain[i][0] for i in range(6)]), expected)
    assert any(not torch.equal(augmented[i][0], expected[i]) for i in range(6))  # the original still crops and flips
