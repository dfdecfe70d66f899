"""What the code is about to run on, said in one line, and the paper's recipe refused on a CPU.

:func:`check_runtime` names the device torch will use (a GPU's name, or the CPU and torch's
threads). The ``paper`` profile is meant for a GPU: on a runtime without one it raises
:class:`NeedsGPUError` with the Colab instruction to switch to a GPU runtime, unless
``allow_cpu`` (or ``$ICD_ALLOW_CPU=1``) asks for the CPU anyway. Given the folder of a run's
records, it adds how long the runs of that profile took on a device of the same name, from the
records' ``wall_time_s``; it estimates nothing it has not measured.

:func:`estimate` says how long a list of runs will take here before a chapter trains them: the
median ``wall_time_s`` of records of the same profile, role and device (the same dataset and
method where there are such), else "unmeasured" with the epochs and images each run trains.
"""
from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from icd_lib.config import get_profile
from icd_lib.errors import UserError
from icd_lib.results.records import RunRecord, load_records
from icd_lib.utils import device_description

if TYPE_CHECKING:
    from icd_lib.experiments.spec import RunSpec

ALLOW_CPU_ENV = "ICD_ALLOW_CPU"
GPU_PROFILES = ("paper",)
COLAB_GPU = ("in Colab: Runtime > Change runtime type > Hardware accelerator: a GPU > Save, then run "
             "the notebook again from the top (the runtime restarts)")


class NeedsGPUError(UserError, RuntimeError):
    """The work asked for needs a GPU and this runtime has none; the message says how to get one."""


@dataclass(frozen=True)
class Runtime:
    """The device torch will use: ``kind`` "cuda", "cpu" or "mps", ``name`` as records store it,
    torch's CPU ``threads``, and the measured time per run on a device of this name, if any."""

    kind: str
    name: str
    threads: int
    measured: str | None = None

    def __str__(self) -> str:
        if self.kind == "cuda":
            found = f"GPU: {self.name}; torch uses {self.threads} CPU threads"
        else:
            found = f"no GPU: {self.name}"
        return found + (f"; {self.measured}" if self.measured else "")


def allow_cpu_from_env() -> bool:
    return os.environ.get(ALLOW_CPU_ENV, "").strip().lower() in ("1", "true", "yes")


def check_runtime(profile: str | None = None, device: str | None = None, allow_cpu: bool | None = None,
                  out: str | os.PathLike | None = None) -> Runtime:
    """The runtime ``device`` (default: a GPU where there is one) gives ``profile``'s runs.

    NeedsGPUError when ``device`` asks for CUDA that is not there, or when ``profile`` is a GPU
    recipe (``GPU_PROFILES``) on a CPU and ``allow_cpu`` (default ``$ICD_ALLOW_CPU``) is not set.
    With ``out`` (the folder holding ``results/``), the measured time per run is added."""
    profile = get_profile(profile)
    kind = torch.device(device).type if device else ("cuda" if torch.cuda.is_available() else "cpu")
    where = "this Colab runtime" if "google.colab" in sys.modules else "this machine"
    if kind == "cuda" and not torch.cuda.is_available():
        raise NeedsGPUError(f"a CUDA device was asked for, but torch sees no GPU on {where}; {COLAB_GPU}; "
                            "elsewhere, run on a machine with an NVIDIA GPU, or use --device cpu")
    allow_cpu = allow_cpu_from_env() if allow_cpu is None else allow_cpu
    if kind == "cpu" and profile.name in GPU_PROFILES and not allow_cpu:
        raise NeedsGPUError(
            f"the {profile.name} profile ({profile.student_epochs} epochs per run on {profile.dataset}) is meant "
            f"for a GPU, and torch sees none on {where}; {COLAB_GPU}. To run it on the CPU anyway, set "
            f"{ALLOW_CPU_ENV}=1")
    name = device_description(device or kind)
    measured = measured_time(out, profile.name, name) if out is not None else None
    return Runtime(kind, name, torch.get_num_threads(), measured)


def measured_time(out: str | os.PathLike, profile: str, device_name: str) -> str:
    """How long the ``profile`` runs recorded under ``out/results`` on ``device_name`` took: the
    median ``wall_time_s`` per run and how many records it comes from."""
    results = Path(out) / "results"
    try:
        times = [r.wall_time_s for r in load_records(results, profile=profile, device=device_name)]
    except (FileNotFoundError, ValueError) as err:
        return f"no measured time ({err})"
    if not times:
        return f"no {profile} run recorded on {device_name} in {results} yet, so no measured time"
    return (f"{profile} runs recorded on {device_name} took {duration(statistics.median(times))} each "
            f"(median wall_time_s of {len(times)} records in {results})")


def duration(seconds: float) -> str:
    """``seconds`` as "42 s", "3.5 min" or "2.1 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Estimate:
    """How long ``runs`` runs take on ``device``: ``seconds`` in all (None: not measured, for
    ``unmeasured`` of them), from ``records`` records; ``work`` says what one run trains."""

    runs: int
    seconds: float | None
    records: int
    device: str
    work: str
    unmeasured: int = 0

    def __str__(self) -> str:
        plural = "s" if self.runs != 1 else ""
        if self.seconds is None:
            which = "" if self.unmeasured == self.runs else f" for {self.unmeasured} of them"
            return (f"{self.runs} run{plural}, time unmeasured: no comparable record{which} was made on "
                    f"this device, {self.device}; {self.work}")
        return (f"{self.runs} run{plural}, about {duration(self.seconds)} on {self.device} (the median "
                f"wall time of {self.records} comparable records)")


def work_of(specs: Sequence["RunSpec"]) -> str:
    """What the runs train, e.g. "each trains 8 epochs on 10,000 fashion_mnist images"."""
    kinds = sorted({(s.epochs, s.train_size, s.dataset) for s in specs}, key=str)
    said = [f"{epochs} epochs on {f'{size:,}' if size else 'all'} {dataset} images"
            for epochs, size, dataset in kinds]
    return "each trains " + " or ".join(said)


def estimate(specs: Sequence["RunSpec"], out: str | os.PathLike | None, device: str | None = None,
             records: Sequence[RunRecord] | None = None) -> Estimate:
    """How long running ``specs`` takes on ``device`` (default: the one torch would use), from
    the records under ``out/results`` (or ``records``): per run, the median ``wall_time_s`` of the
    records of its profile and role (teacher or student) made on a device of the same name,
    narrowed to its dataset and method where such records exist. Unmeasured when any run has no
    comparable record; nothing is extrapolated from another device or profile."""
    name = device_description(device)
    if records is None:
        folder = None if out is None else Path(out) / "results"
        records = load_records(folder) if folder is not None and folder.is_dir() else []
    here = [r for r in records if r.device == name and r.wall_time_s]
    total, used, unmeasured = 0.0, set(), 0
    for spec in specs:
        role = "teacher" if spec.is_teacher else "student"
        same = [r for r in here if r.profile == spec.profile and r.role == role]
        for narrower in (lambda r: r.dataset == spec.dataset, lambda r: r.method == spec.method):
            same = [r for r in same if narrower(r)] or same
        if not same:
            unmeasured += 1
            continue
        total += statistics.median(r.wall_time_s for r in same)
        used.update(r.name for r in same)
    seconds = None if unmeasured else total
    return Estimate(len(specs), seconds, len(used), name, work_of(specs), unmeasured)
