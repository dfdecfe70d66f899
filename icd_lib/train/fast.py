"""The fast single-device path: data resident on the device, mixed precision, compilation.

The plain path (a ``DataLoader`` with per-image CPU augmentation, fp32) is what the paper's code
does; on a GPU it spends most of each step waiting for the host. This module keeps the recipe
(batch 64, RandomCrop(32, padding=4) + horizontal flip, the same normalisation, the same
schedule) and removes the waiting:

- ``GPUResidentLoader``: the whole training set on the device as uint8 NCHW; crop, flip and
  normalisation are a handful of batched tensor operations per batch, with no host round trip.
- ``FastSettings`` / ``resolve_fast_settings``: bf16 autocast, channels_last, ``torch.compile``
  and CUDA graphs, each switched off (with a note saying why) where the device cannot use it.
- ``autocast`` and ``prepare_models``: what the training loop wraps its step in and calls once
  on its models.

Everything here also runs on the CPU, which is how the tests check it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from icd_lib.data.images import ImageDataset
from icd_lib.data.seeds import derive_seed
from icd_lib.data.transforms import PAPER_CROP_PADDING, channel_values, normalize, random_crop_flip


def epoch_generator(seed: int, epoch: int, *stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``derive_seed(seed, epoch, *stream)``.

    ``epoch_generator(seed, epoch)`` is the stream whose ``randperm`` orders the plain path's epoch
    (``icd_lib.data.EpochSampler``), so both paths visit the images in the same order.
    """
    return torch.Generator(device=device).manual_seed(derive_seed(seed, epoch, *stream))


class Shard(NamedTuple):
    """Process ``rank`` of ``world_size`` in a data-parallel job; ``Shard()``: the only process."""

    rank: int = 0
    world_size: int = 1


class GPUResidentLoader:
    """Batches (x, y, index) drawn from an ``ImageDataset`` held on one device; augmentation in batched ops.

    The dataset's uint8 images (N, c, H, W), with c = len(mean) or c = 1 for grey images served
    as len(mean) channels, and its (N,) labels are moved to ``device`` once; its mean, std and
    ``augment`` switch say how batches are made.

    Each epoch (``set_epoch``, or the next one automatically on each ``iter``) orders the N
    images (when ``shuffle``; else in dataset order) by a permutation drawn from (seed, epoch) alone, the same as the plain path's
    (``icd_lib.data.make_loader``) for the same seed. With the dataset's ``augment``, each batch then gets
    ``icd_lib.data.transforms.random_crop_flip`` - the paper's RandomCrop(H, padding=4, zero fill)
    and horizontal flip, the very function of the plain path - drawn from a generator on the
    device seeded by (seed, epoch, rank), so no batch waits for the host. Finally ToTensor
    (/255) and Normalize(mean, std) in float32: ``icd_lib.data.transforms.normalize``, with mean
    and std made on the device once.

    Yields x (B, len(mean), H, W) float32 (channels_last memory format if asked), y (B,) int64
    and index (B,) int64, the images' positions in ``images``, all on ``device``.
    ``drop_last``: the last, smaller batch is dropped (True) or kept (False); None follows
    ``icd_lib.data.make_loader``: dropped only when shuffling and it would hold a single image
    (BatchNorm and in-batch negatives need two), and always under data parallelism.

    With ``shard=Shard(rank, world_size)``, world_size > 1 (data-parallel training), every process
    draws the same order, global batch b is order[b*B*W:(b+1)*B*W] with B = ``batch_size`` per
    process, and process ``rank`` takes its ``rank``-th block of B: the processes' batches together hold exactly the images a
    single process with batch size B*W would see. This needs ``drop_last=True`` (a smaller last
    batch cannot be split evenly).
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, shuffle: bool = True, drop_last: bool | None = None,
                 seed: int = 0, device: torch.device | str | None = None, channels_last: bool = False,
                 shard: Shard = Shard()):
        check_resident_input(dataset, batch_size, shard)
        if drop_last is None:
            drop_last = shard.world_size > 1 or (shuffle and len(dataset) % batch_size == 1)
        if shard.world_size > 1 and not drop_last:
            raise ValueError("data-parallel loading (world_size > 1) needs drop_last=True: a last, smaller batch cannot be split evenly")
        if len(dataset) < batch_size * shard.world_size and drop_last:
            raise ValueError(
                f"{len(dataset)} images make no full batch of {batch_size} x {shard.world_size} processes with drop_last=True"
            )
        self.device = torch.device(device) if device is not None else dataset.images.device
        self.images = dataset.images.to(self.device).contiguous()
        self.labels = dataset.labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.mean = channel_values(dataset.mean, self.device)  # (1, c, 1, 1), made once: no copy to the device per batch
        self.std = channel_values(dataset.std, self.device)
        self.augment = dataset.augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.rank, self.world_size = shard
        self._next_epoch = 0

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        """Batches per epoch (per process)."""
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.num_images // global_batch
        return -(-self.num_images // global_batch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter`` draw epoch ``epoch``'s order and augmentation."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._next_epoch = epoch

    def epoch_order(self, epoch: int) -> Tensor:
        """The order (N,) of the images in epoch ``epoch``, on the CPU (the same for every process)."""
        if not self.shuffle:
            return torch.arange(self.num_images)
        return torch.randperm(self.num_images, generator=epoch_generator(self.seed, epoch))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        epoch = self._next_epoch
        self._next_epoch += 1
        order = self.epoch_order(epoch).to(self.device)
        augmentation = epoch_generator(self.seed, epoch, 1 + self.rank, device=self.device)
        global_batch = self.batch_size * self.world_size
        for b in range(len(self)):
            start = b * global_batch + self.rank * self.batch_size
            index = order[start : start + self.batch_size]
            x = self.images[index]
            if self.augment:
                x = random_crop_flip(x, generator=augmentation, padding=PAPER_CROP_PADDING)
            yield normalize(x, self.mean, self.std, self.memory_format), self.labels[index], index

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def check_resident_input(dataset: ImageDataset, batch_size: int, shard: Shard) -> None:
    """TypeError or ValueError, saying what is wrong, unless a ``GPUResidentLoader`` can serve ``dataset``."""
    if not isinstance(dataset, ImageDataset):
        raise TypeError(
            f"GPUResidentLoader needs an icd_lib.data.ImageDataset (from load_dataset, or built from uint8 images "
            f"and labels), got {type(dataset).__name__}"
        )
    if dataset.images.shape[1] not in (1, len(dataset.mean)):
        raise ValueError(
            f"mean and std need one value per served channel and the images {len(dataset.mean)} or 1 channels; "
            f"got {len(dataset.mean)} means and {dataset.images.shape[1]}-channel images"
        )
    if any(s <= 0 for s in dataset.std):
        raise ValueError(f"std must be positive, got {tuple(dataset.std)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 <= shard.rank < shard.world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={shard.rank}, world_size={shard.world_size}")


@dataclass(frozen=True)
class FastSettings:
    """What the fast path switches on for one device; ``notes`` say what was switched off and why.

    amp:           bf16 autocast of the models' forward passes (BatchNorm keeps fp32 weights and
                   running statistics; the loss is computed in fp32, see ``float32_outputs``)
    channels_last: NHWC memory format for models and batches (faster convolutions on tensor cores)
    compile:       ``torch.compile`` of student and teacher
    cuda_graphs:   compile with mode "reduce-overhead", which replays each step as a CUDA graph
    """

    amp: bool
    channels_last: bool
    compile: bool
    cuda_graphs: bool
    notes: tuple[str, ...] = ()

    @property
    def compile_mode(self) -> str | None:
        if not self.compile:
            return None
        return "reduce-overhead" if self.cuda_graphs else "default"


def resolve_fast_settings(
    device: torch.device | str,
    *,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> FastSettings:
    """The fast-path features for ``device``: ``None`` means the device's best default.

    On CUDA, amp (if the GPU has bf16) and channels_last default to on. On the CPU they default
    to off (bf16 and NHWC are not faster on ordinary CPUs; either can still be asked for, which
    is how the tests run them). CUDA graphs need a CUDA device and are switched off elsewhere;
    they imply ``compile``.
    """
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    notes: list[str] = []
    bf16_ok = on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if amp is None:
        amp = bf16_ok
        if not on_cuda:
            notes.append("amp off by default on the CPU: bf16 autocast is slower than fp32 on most CPUs")
    elif amp and on_cuda and not bf16_ok:
        amp = False
        notes.append("amp switched off: this GPU has no bf16 support")
    if channels_last is None:
        channels_last = on_cuda
    if cuda_graphs and not on_cuda:
        cuda_graphs = False
        notes.append(f"CUDA graphs switched off: they need a CUDA device, not {device.type}")
    if cuda_graphs and not compile:
        compile = True
        notes.append("compile switched on: CUDA graphs are made by torch.compile(mode='reduce-overhead')")
    return FastSettings(amp=bool(amp), channels_last=bool(channels_last), compile=compile, cuda_graphs=cuda_graphs, notes=tuple(notes))


def autocast(device: torch.device | str, enabled: bool):
    """bf16 autocast on ``device`` if ``enabled`` (a no-op context otherwise).

    BatchNorm under autocast: its weights and running statistics stay fp32 (autocast never
    casts parameters or buffers) and the batch statistics are accumulated in fp32 from the bf16
    activations, on CUDA and on the CPU alike; ``tests/test_fast.py`` checks both claims.
    """
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def float32_outputs(output):
    """A ``ModelOutput`` with every tensor cast to float32, so that losses run in full precision."""
    return type(output)(
        logits=output.logits.float(),
        features=tuple(f.float() for f in output.features),
        pooled=output.pooled.float(),
    )


def prepare_models(student: nn.Module, teacher: nn.Module | None, settings: FastSettings):
    """Put the models in fast-path form; returns (student_forward, teacher_forward).

    The teacher is set to eval mode with ``requires_grad`` off (call it under ``torch.no_grad``).
    With channels_last both models are converted in place. With compile the returned forwards are
    ``torch.compile`` wrappers sharing the originals' parameters: keep building the optimizer from,
    and saving checkpoints of, the original modules (a compiled module's state_dict keys carry an
    ``_orig_mod.`` prefix).
    """
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    if settings.channels_last:
        for model in (student, teacher):
            if model is not None:
                model.to(memory_format=torch.channels_last)
    if not settings.compile:
        return student, teacher
    return compile_model(student, settings), compile_model(teacher, settings)


def compile_model(model: nn.Module | None, settings: FastSettings):
    """``torch.compile(model)`` in the mode ``settings`` ask for (None stays None)."""
    return None if model is None else torch.compile(model, mode=settings.compile_mode, dynamic=False)
