"""How a run is carried out, apart from what it is.

A run is *what* (``icd_lib.experiments.RunSpec``, or for the loop alone a ``TrainConfig``) plus
*how*: one :class:`RunOptions` value that says where files go, where the data lives, on which
device, with which fast-path features, whether to show progress and the data-parallel job the
process belongs to. Nothing in ``RunOptions`` changes what a run is meant to learn, so a run may
resume under other options (each segment of its record says how it ran).

Everything a run writes goes under ``out``::

    out/checkpoints/<run name>/last.pt, best.pt, .lock
    out/results/<run name>.json
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from icd_lib.train.distributed import DistributedContext
from icd_lib.train.fast import FastSettings, resolve_fast_settings
from icd_lib.utils import get_device


def checkpoint_dir(out: str | Path, run_name: str) -> Path:
    """Where run ``run_name`` keeps ``last.pt`` and ``best.pt`` under the output folder ``out``."""
    return Path(out) / "checkpoints" / run_name


def results_dir(out: str | Path) -> Path:
    """Where the run records under the output folder ``out`` live."""
    return Path(out) / "results"


@dataclass(frozen=True)
class RunOptions:
    """How to run: output folder, data root, device, fast path, progress, data parallelism.

    out:          the output folder (see the module docstring); None: the loop writes nothing
    data_root:    where datasets are looked for (None: ``icd_lib.data``'s default places)
    device:       "cpu", "cuda", "cuda:1"; None: the best available (under ``distributed``, the
                  process's own)
    fast:         the fast path: data resident on the device, and where ``amp``/``channels_last``
                  are None, the device's best choice of them (``icd_lib.train.fast``)
    progress:     progress bars and a line per epoch
    distributed:  this process's place in a data-parallel job (``init_distributed()``)
    num_workers:  ``DataLoader`` worker processes of the plain path (None: the profile's, else 0)
    amp, channels_last, compile, cuda_graphs: fast-path features (see ``FastSettings``)
    """

    out: Path | None = None
    data_root: Path | None = None
    device: str | None = None
    fast: bool = False
    progress: bool = True
    distributed: DistributedContext | None = None
    num_workers: int | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self):
        for name in ("out", "data_root"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs: always, except data-parallel ranks above 0."""
        return self.distributed is None or self.distributed.is_main

    def checkpoint_dir(self, run_name: str) -> Path | None:
        return None if self.out is None else checkpoint_dir(self.out, run_name)

    def results_dir(self) -> Path | None:
        return None if self.out is None else results_dir(self.out)

    def resolve_device(self) -> torch.device:
        """The device the run trains on: the data-parallel process's, else ``device`` (or the best available)."""
        if self.distributed is None:
            return get_device(self.device)
        if self.device is not None and torch.device(self.device).type != self.distributed.device.type:
            raise ValueError(
                f"device={self.device!r}, but this data-parallel process runs on {self.distributed.device}; "
                "leave device None (each process uses the device init_distributed chose)"
            )
        return self.distributed.device

    def fast_settings(self, device: torch.device) -> FastSettings:
        """The fast-path features used on ``device``: ``None`` fields follow ``fast``."""
        default = None if self.fast else False
        return resolve_fast_settings(
            device,
            amp=default if self.amp is None else self.amp,
            channels_last=default if self.channels_last is None else self.channels_last,
            compile=self.compile,
            cuda_graphs=self.cuda_graphs,
        )
