"""The fast path: device-resident loader against torchvision's transforms, settings, autocast."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from icd_lib.data import ImageDataset, make_loader
from icd_lib.data.transforms import channel_values, normalize
from icd_lib.train.fast import (
    GPUResidentLoader,
    Shard,
    autocast,
    float32_outputs,
    prepare_models,
    resolve_fast_settings,
)

MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def dataset(images: torch.Tensor, labels: torch.Tensor, augment: bool = True) -> ImageDataset:
    """``images`` and ``labels`` as an ``ImageDataset`` with this module's MEAN and STD."""
    return ImageDataset(images, labels, [str(k) for k in range(int(labels.max()) + 1)], MEAN, STD, augment=augment)


def random_images(n: int, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # start at 1 so that a zero pixel in a crop can only come from the padding
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def torchvision_pipeline(image_chw: torch.Tensor, dy: int, dx: int, flip: bool, padding: int = 4) -> torch.Tensor:
    """RandomCrop(padding, fill 0) -> RandomHorizontalFlip -> ToTensor -> Normalize, with fixed draws, on a PIL image."""
    pil = Image.fromarray(image_chw.permute(1, 2, 0).numpy())
    h, w = image_chw.shape[1:]
    out = TF.crop(TF.pad(pil, padding, fill=0), dy, dx, h, w)
    if flip:
        out = TF.hflip(out)
    return T.Normalize(MEAN, STD)(T.ToTensor()(out))


def torchvision_normalized(images: torch.Tensor) -> torch.Tensor:
    """ToTensor -> Normalize per uint8 (c, h, w) image, through PIL: (n, c, h, w) float32."""
    return torch.stack([T.Normalize(MEAN, STD)(T.ToTensor()(Image.fromarray(im.permute(1, 2, 0).numpy()))) for im in images])


def infer_draws(sources: torch.Tensor, crops: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """(dy, dx, flip) per image such that crops[b] is that window of the zero-padded sources[b], or -1 if none.

    Written independently of the library: slices of an explicitly zero-padded copy.
    """
    n, c, h, w = sources.shape
    padded = torch.zeros(n, c, h + 2 * padding, w + 2 * padding)
    padded[:, :, padding : padding + h, padding : padding + w] = sources
    windows = nn.functional.unfold(padded, (h, w))  # (n, c*h*w, k*k): window at (dy, dx) in column dy*k + dx
    k = 2 * padding + 1
    found = torch.full((n, 3), -1)
    for flip in (0, 1):
        target = (crops.flip(-1) if flip else crops).float().reshape(n, -1, 1)
        match = (windows == target).all(dim=1)  # (n, k*k)
        assert (match.sum(dim=1) + (found[:, 0] >= 0)).le(1).all(), "ambiguous test images"
        hit = match.any(dim=1)
        position = match.float().argmax(dim=1)
        found[hit] = torch.stack([position // k, position % k, torch.full_like(position, flip)], dim=1)[hit]
    return found


def loader_uint8_batches(loader: GPUResidentLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 pixels recovered from x, index) per batch; exact because x = (p / 255 - mean) / std."""
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1)
    return [(((x * std + mean) * 255).round().to(torch.uint8), index) for x, _, index in loader]


@pytest.mark.parametrize("device", devices())
def test_loader_batches_equal_torchvision_transforms_for_some_crop_and_flip(device):
    images, labels = random_images(40), torch.arange(40) % 7
    loader = GPUResidentLoader(dataset(images, labels), 16, seed=3, device=device)
    seen = []
    for x, y, index in loader:
        assert x.device.type == y.device.type == index.device.type == device
        x, y, index = x.cpu(), y.cpu(), index.cpu()
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
        assert torch.equal(y, labels[index])
        pixels = ((x * torch.tensor(STD).view(1, -1, 1, 1) + torch.tensor(MEAN).view(1, -1, 1, 1)) * 255).round().to(torch.uint8)
        draws = infer_draws(images[index], pixels)
        assert (draws >= 0).all(), "a batch image is no crop-and-flip of its source"
        for b, i in enumerate(index.tolist()):
            dy, dx, flip = draws[b].tolist()
            torch.testing.assert_close(x[b], torchvision_pipeline(images[i], dy, dx, bool(flip)), atol=1e-6, rtol=0)
        seen += index.tolist()
    assert sorted(seen) == list(range(40))


def test_grey_images_are_served_as_three_equal_channels():
    grey = random_images(6, c=1)
    loader = GPUResidentLoader(dataset(grey, torch.arange(6), augment=False), 6, shuffle=False)
    x = next(iter(loader))[0]
    rgb = torch.stack([T.Normalize(MEAN, STD)(T.ToTensor()(Image.fromarray(im[0].numpy()).convert("RGB"))) for im in grey])
    torch.testing.assert_close(x, rgb, atol=1e-6, rtol=0)


def test_without_augmentation_batches_equal_totensor_then_normalize():
    images = random_images(10)
    loader = GPUResidentLoader(dataset(images, torch.zeros(10, dtype=torch.long), augment=False), 4, shuffle=False)
    x = torch.cat([batch for batch, _, _ in loader])
    expected = torchvision_normalized(images)
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)


def test_normalize_takes_statistics_made_once_without_copying_them():
    mean, std = channel_values(MEAN, "cpu"), channel_values(torch.tensor(STD), "cpu")
    assert mean.shape == std.shape == (1, 3, 1, 1)
    assert channel_values(mean, "cpu").data_ptr() == mean.data_ptr()  # reused as it is, no new tensor per batch
    images = random_images(5)
    out = normalize(images, mean, std, memory_format=torch.channels_last)
    expected = torchvision_normalized(images)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_draws_cover_the_same_range_as_torchvision_random_crop_uniformly_and_flip_half_the_time():
    n = 3000
    images = random_images(n, h=8, w=8)
    loader = GPUResidentLoader(dataset(images, torch.zeros(n, dtype=torch.long)), 500)
    draws = torch.cat([infer_draws(images[index], pixels) for pixels, index in loader_uint8_batches(loader)])
    assert (draws >= 0).all()
    torch.manual_seed(0)
    tv = {T.RandomCrop.get_params(torch.zeros(3, 16, 16), (8, 8))[:2] for _ in range(2000)}
    assert {tuple(d) for d in draws[:, :2].tolist()} == tv == {(i, j) for i in range(9) for j in range(9)}
    counts = torch.bincount(draws[:, 0] * 9 + draws[:, 1], minlength=81).float()
    # uniform over 81 cells: each count ~ Binomial(n, 1/81), sd ~ 6.0 around 37
    assert (counts - n / 81).abs().max() < 5 * (n / 81) ** 0.5
    assert abs(draws[:, 2].float().mean().item() - 0.5) < 4 * 0.5 / n**0.5


@pytest.mark.parametrize("n", [70, 65])  # 65 = 4 * 16 + 1: a last batch of one image
@pytest.mark.parametrize("drop_last", [False, True, None])
def test_same_batches_and_order_as_the_plain_loader(n, drop_last):
    batch = 16
    images = ImageDataset(random_images(n, h=4, w=4), torch.arange(n), [str(i) for i in range(n)], MEAN, STD, augment=True)
    fast = GPUResidentLoader(images, batch, shuffle=True, seed=4, drop_last=drop_last)
    plain = make_loader(images, batch, train=True, seed=4, drop_last=drop_last)
    for _ in range(2):  # two epochs
        fast_indices = [index for _, _, index in fast]
        plain_indices = [index for _, _, index in plain]
        assert len(fast) == len(plain) == len(fast_indices)
        assert all(torch.equal(f, p) for f, p in zip(fast_indices, plain_indices))
        everything = torch.cat(fast_indices)
        assert len(set(everything.tolist())) == len(everything)  # no image twice in an epoch
        if len(everything) < n:
            assert drop_last is not False and len(everything) == n // batch * batch
        else:
            assert sorted(everything.tolist()) == list(range(n))
    assert (len(fast) == n // batch) == (drop_last is True or (drop_last is None and n % batch == 1))


def test_the_loader_refuses_other_datasets():
    with pytest.raises(TypeError, match="ImageDataset"):
        GPUResidentLoader(torch.utils.data.TensorDataset(torch.zeros(3)), 2)


@pytest.mark.parametrize("device", devices())
def test_order_is_reproducible_from_seed_and_epoch(device):
    images = dataset(random_images(50, h=8, w=8).to(device), torch.arange(50).to(device))

    def epoch(loader, e=None):
        if e is not None:
            loader.set_epoch(e)
        return [tuple(t.clone() for t in batch) for batch in loader]

    a = GPUResidentLoader(images, 10, seed=5)
    b = GPUResidentLoader(images, 10, seed=5)
    first, second = epoch(a), epoch(a)  # epochs 0 and 1, drawn automatically
    again = epoch(b, 1)
    assert all(torch.equal(u, v) for bu, bv in zip(second, again) for u, v in zip(bu, bv))
    assert not torch.equal(first[0][2], second[0][2])
    other_seed = epoch(GPUResidentLoader(images, 10, seed=6), 1)
    assert not torch.equal(other_seed[0][2], second[0][2])


def test_processes_batches_concatenate_to_the_single_process_batch():
    n, per_rank, world = 100, 8, 3
    images = dataset(random_images(n, h=6, w=6), torch.arange(n), augment=False)
    kwargs = dict(drop_last=True, seed=2)
    single = list(GPUResidentLoader(images, per_rank * world, **kwargs))
    ranks = [list(GPUResidentLoader(images, per_rank, shard=Shard(r, world), **kwargs)) for r in range(world)]
    assert len(single) == n // (per_rank * world) and all(len(r) == len(single) for r in ranks)
    for b, (x, y, index) in enumerate(single):
        torch.testing.assert_close(torch.cat([r[b][0] for r in ranks]), x, atol=0, rtol=0)
        assert torch.equal(torch.cat([r[b][2] for r in ranks]), index)


def test_channels_last_batches_have_the_same_values():
    images = dataset(random_images(12), torch.arange(12))
    plain = next(iter(GPUResidentLoader(images, 12, seed=1)))[0]
    nhwc = next(iter(GPUResidentLoader(images, 12, seed=1, channels_last=True)))[0]
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, nhwc)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mean=(0.5, 0.5), std=(0.5, 0.5)), ValueError, "one value per served channel"),
        (dict(std=(0.5, 0.0, 0.5)), ValueError, "std must be positive"),
        (dict(shard=Shard(0, 2), drop_last=False), ValueError, "drop_last=True"),
        (dict(shard=Shard(2, 2), drop_last=True), ValueError, "rank < world_size"),
        (dict(batch_size=8, drop_last=True), ValueError, "no full batch"),
        (dict(batch_size=0), ValueError, "batch_size must be at least 1"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, error, match):
    stats = {"mean": kwargs.pop("mean", MEAN), "std": kwargs.pop("std", STD)}
    images = ImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ["a"], **stats)
    args = {"batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        GPUResidentLoader(images, **args)


def test_cpu_settings_switch_gpu_only_features_off_with_a_note():
    s = resolve_fast_settings("cpu", cuda_graphs=True)
    assert not s.cuda_graphs and not s.compile and not s.amp and not s.channels_last
    assert any("CUDA graphs switched off" in n for n in s.notes)
    assert resolve_fast_settings("cpu", amp=True, channels_last=True).amp
    cuda = resolve_fast_settings("cuda", cuda_graphs=True)
    assert cuda.cuda_graphs and cuda.compile and cuda.compile_mode == "reduce-overhead" and cuda.channels_last


@pytest.mark.parametrize("device", devices())
def test_batchnorm_under_bf16_autocast_keeps_fp32_weights_and_fp32_statistics(device):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 16, 3).to(device), nn.BatchNorm2d(16, momentum=1.0).to(device)
    x = torch.randn(32, 3, 16, 16, device=device) * 3 + 1
    with autocast(device, enabled=True):
        c = conv(x)
        out = bn(c)
    assert c.dtype == torch.bfloat16  # the convolution did run in bf16
    assert bn.weight.dtype == bn.running_mean.dtype == bn.running_var.dtype == torch.float32
    # momentum 1: running stats are this batch's statistics; fp32 reference on the same bf16 activations
    c32 = c.detach().double()
    mean, var = c32.mean(dim=(0, 2, 3)), c32.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    expected = (c32 - mean[None, :, None, None]) / (c32.var(dim=(0, 2, 3), unbiased=False)[None, :, None, None] + bn.eps).sqrt()
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)  # output itself is bf16


def test_float32_outputs_and_prepare_models():
    from icd_lib.outputs import ModelOutput

    out = ModelOutput(torch.zeros(2, 3, dtype=torch.bfloat16), (torch.zeros(2, 4, 1, 1, dtype=torch.bfloat16),), torch.zeros(2, 4, dtype=torch.bfloat16))
    f = float32_outputs(out)
    assert isinstance(f, ModelOutput) and all(t.dtype == torch.float32 for t in (f.logits, f.pooled, *f.features))

    student, teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    s_fwd, t_fwd = prepare_models(student, teacher, resolve_fast_settings("cpu", channels_last=True))
    assert s_fwd is student and t_fwd is teacher and student.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters()) and all(p.requires_grad for p in student.parameters())
    assert student[0].weight.is_contiguous(memory_format=torch.channels_last)
