"""The one place where the loop's training and test batches are built, from data and how to run.

Data given to ``train`` is a ``Dataset`` of (x, y[, index]) items or something that already
yields batches (a ``DataLoader``, a ``GPUResidentLoader``). A dataset becomes:

- on the fast path or under data parallelism: a ``GPUResidentLoader`` on the run's device
  (the one loader that shards batches over processes, so data-parallel runs use it on the CPU
  too); under data parallelism the training loader serves this process's share of each batch;
- otherwise: the plain path's ``DataLoader`` (``icd_lib.data.make_loader``), as the paper's code.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from icd_lib.data.images import ImageDataset
from icd_lib.data.loaders import make_loader
from icd_lib.train.distributed import DistributedContext, per_process_batch_size
from icd_lib.train.fast import FastSettings, GPUResidentLoader, Shard
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig


def build_loaders(train_data, test_data, config: TrainConfig, how: RunOptions, device: torch.device,
                  settings: FastSettings) -> tuple[Iterable, Iterable]:
    """(training batches, test batches) for a run on ``device`` (see the module docstring); the
    test batches are never sharded (the main process evaluates)."""
    resident = how.fast or how.distributed is not None
    workers = how.num_workers or 0
    return (build_loader(train_data, True, config, device, settings.channels_last if resident else None,
                         how.distributed, workers),
            build_loader(test_data, False, config, device, settings.channels_last if how.fast else None, None, workers))


def build_loader(data, train: bool, config: TrainConfig, device: torch.device, channels_last: bool | None,
                 distributed: DistributedContext | None, num_workers: int) -> Iterable:
    """Batches of ``data``: held on ``device`` when ``channels_last`` is not None (in that memory
    format), else the plain ``DataLoader``; a loader given as ``data`` is checked and passed through."""
    if isinstance(data, ImageDataset) and channels_last is not None:
        return resident_loader(data, train, config, device, channels_last, distributed)
    if distributed is not None:
        return checked_share(data, config, distributed)
    if isinstance(data, Dataset):
        return make_loader(data, config.batch_size, train=train, num_workers=num_workers, seed=config.seed)
    if isinstance(data, Iterable):
        return data
    raise TypeError(f"expected a torch Dataset or an iterable of batches, got {type(data).__name__}")


def resident_loader(dataset: ImageDataset, train: bool, config: TrainConfig, device: torch.device,
                    channels_last: bool, distributed: DistributedContext | None) -> GPUResidentLoader:
    """``dataset`` held on ``device`` with the run's batch size and seed; under ``distributed``
    this process's share, ``per_process_batch_size(config.batch_size, world_size)`` images."""
    batch_size, shard = config.batch_size, Shard()
    if distributed is not None:
        batch_size = per_process_batch_size(config.batch_size, distributed.world_size)
        shard = Shard(distributed.rank, distributed.world_size)
    return GPUResidentLoader(dataset, batch_size, shuffle=train, device=device, seed=config.seed,
                             channels_last=channels_last, shard=shard)


def checked_share(data, config: TrainConfig, distributed: DistributedContext) -> GPUResidentLoader:
    """A ``GPUResidentLoader`` given for data-parallel training, checked to be this process's share."""
    if not isinstance(data, GPUResidentLoader):
        raise TypeError(
            "data-parallel training reads its batches from a GPUResidentLoader; pass an icd_lib.data.ImageDataset "
            f"(from load_dataset) or a GPUResidentLoader built with shard=Shard(rank, world_size), not {type(data).__name__}"
        )
    batch_size = per_process_batch_size(config.batch_size, distributed.world_size)
    if (data.rank, data.world_size, data.batch_size) != (distributed.rank, distributed.world_size, batch_size):
        raise ValueError(
            f"the training loader serves rank {data.rank} of {data.world_size} with batches of {data.batch_size}, but this "
            f"process is rank {distributed.rank} of {distributed.world_size} and its share of the batch of "
            f"{config.batch_size} is {batch_size}; build it with shard=Shard(rank, world_size) and batch_size=per_process_batch_size(...)"
        )
    return data


def num_examples(data) -> int:
    """Number of examples in a dataset, a ``DataLoader`` or a device-resident loader."""
    if isinstance(data, Dataset):
        return len(data)
    if hasattr(data, "num_images"):
        return data.num_images
    if hasattr(data, "dataset"):
        return len(data.dataset)
    raise TypeError(f"cannot tell how many examples {type(data).__name__} holds; pass a Dataset or a DataLoader")


def training_labels(data) -> Tensor | None:
    """The (N,) class labels of a dataset, a ``DataLoader`` or a device-resident loader, in
    dataset-index order; None when it does not expose them as ``labels`` (methods that use them,
    such as CRD's negative sampling, then fall back to a rule that needs no labels)."""
    source = data if isinstance(data, Dataset) or hasattr(data, "num_images") else getattr(data, "dataset", None)
    labels = getattr(source, "labels", None)
    return torch.as_tensor(labels) if labels is not None else None
