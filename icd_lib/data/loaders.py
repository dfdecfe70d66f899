"""DataLoaders whose shuffling and augmentation in epoch e depend only on (seed, e).

How the trainer uses them::

    loader = make_loader(train_set, batch_size=64, train=True, seed=seed)
    loader.set_epoch(start_epoch)          # only needed when resuming; a fresh loader starts at 0
    for epoch in range(start_epoch, epochs):
        for images, labels, indices in loader:   # each full pass advances the loader's epoch by one
            ...

Every ``iter(loader)`` uses the loader's current epoch e and then advances it to e + 1: the order
is ``randperm`` under ``derive_seed(seed, e)``, and the dataset's augmentation generator (and, with
workers, each worker's) is reseeded from the same seed. A run resumed at epoch e therefore sees the
same batches as an uninterrupted one, whatever ran before. Starting an iteration and abandoning it
(``next(iter(loader))`` to peek at a batch) still advances the epoch; call ``set_epoch`` afterwards.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from icd_lib.data.seeds import derive_seed


class EpochSampler(Sampler[int]):
    """Positions 0..n-1, shuffled by a generator seeded from (seed, epoch) when ``shuffle``, else in order."""

    def __init__(self, num_items: int, shuffle: bool, seed: int = 0) -> None:
        self.num_items = num_items
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_items))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.num_items, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_items


def _reseed_worker_augmentation(worker_id: int) -> None:
    info = get_worker_info()
    reseed = getattr(info.dataset, "reseed_augmentation", None)
    if reseed is not None:
        reseed(info.seed % 2**63)  # info.seed = the loader's per-epoch base seed + worker_id


class EpochLoader(DataLoader):
    """A DataLoader with an epoch counter: see the module docstring. ``epoch`` is the next epoch to run."""

    def __init__(self, dataset: Dataset, *, seed: int, shuffle: bool, **kwargs) -> None:
        self.seed = seed
        self.epoch = 0
        super().__init__(
            dataset,
            sampler=EpochSampler(len(dataset), shuffle, seed),
            generator=torch.Generator(),
            worker_init_fn=_reseed_worker_augmentation,
            **kwargs,
        )

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (e.g. the first epoch of a resumed run)."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def __iter__(self):
        epoch_seed = derive_seed(self.seed, self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.generator.manual_seed(epoch_seed)  # the workers' base seed is drawn from it
        reseed = getattr(self.dataset, "reseed_augmentation", None)
        if reseed is not None:
            reseed(epoch_seed)
        self.epoch += 1
        return super().__iter__()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool | None = None,
) -> EpochLoader:
    """A loader of ``dataset``: shuffled per (seed, epoch) when ``train``, in order otherwise.

    drop_last: None keeps the last, smaller batch (the paper's recipe: 782 steps per CIFAR-100 epoch),
    except in training when it would hold a single image (BatchNorm and in-batch contrastive losses
    need at least two).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("cannot build a loader over an empty dataset")
    if drop_last is None:
        drop_last = train and len(dataset) % batch_size == 1
    return EpochLoader(
        dataset,
        seed=seed,
        shuffle=train,
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
    )
