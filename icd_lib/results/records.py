"""Run records: one JSON file per training run, saying what was run, where, and what it gave.

A record holds the full configuration, the per-epoch metrics, the best and last test accuracy,
the wall time, the device, the library versions and the git commit, so that every number in the
book can be traced to the run that produced it.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from icd_lib.errors import InputError
from icd_lib.utils import atomic_write, load_average, renamed_keys

RECORD_FORMAT = 3
# 1: before records carried their spec and final evaluation; 2: before ``student`` became ``model``
READABLE_FORMATS = (1, 2, 3)
FORMAT_2_NAMES = {"student": "model"}  # what records before format 3 called today's fields
METRIC_FIELDS = ("best_top1", "best_top5", "last_top1", "last_top5", "wall_time_s")
ACCURACY_FIELDS = ("best_top1", "best_top5", "last_top1", "last_top5")  # percentages


@dataclass
class RunRecord:
    """What one training run did and measured. Accuracies are percentages.

    ``history`` has one dict per epoch: ``epoch``, ``lr``, ``train_loss``, ``terms`` (mean of every
    named loss term, unweighted), ``test_top1``, ``test_top5``, ``epoch_time_s`` and ``load`` (the
    machine's 1-minute load average at the epoch's end, None where unknown; records before it
    lack it); a method with an initialisation stage (AB, FT, FSP) has its stage epochs first,
    marked ``"stage": "init"``. ``MACHINE_FIELDS`` are the entries that depend on the machine.
    ``best_*`` is the main epoch with the highest test top-1 (selected on the test set, shown
    only beside the last), ``last_*`` the final epoch (the book's primary number). ``wall_time_s`` is the time spent in epochs (training, evaluation, checkpoints), summed
    over the segments of a resumed run; data loading and model building before it are not counted.
    ``host`` (``host_info``) holds the CPUs, torch's threads and two readings of the 1-minute load
    average, when the process that finished the run started training and when it wrote the record:
    for a resumed run, the last segment only. A load above ``cpus`` hints that runs waited for a
    CPU, so their times are upper bounds; two readings cannot say what happened in between.
    """

    name: str
    role: str  # "teacher" or "student"
    method: str  # recipe name, a key of icd_lib.config.METHOD_WEIGHTS
    model: str  # the trained network's architecture (the teacher's in a teacher run)
    teacher: str | None
    seed: int
    config: dict
    history: list[dict]
    best_top1: float
    best_top5: float
    best_epoch: int
    last_top1: float
    last_top5: float
    wall_time_s: float
    device: str
    profile: str | None = None
    dataset: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    teacher_checkpoint: str | None = None
    teacher_top1: float | None = None
    checkpoint_dir: str | None = None
    command: str | None = None
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None  # uncommitted changes in the library's source; None: not a git checkout
    created: str = ""
    spec: dict | None = None  # the RunSpec's identity (icd_lib.experiments.spec); None in format 1
    evaluation: dict | None = None  # the final evaluation (icd_lib.eval.final); None until measured
    evaluated_commit: str | None = None  # the commit that measured ``evaluation``
    segments: list = field(default_factory=list)  # one {"from_epoch", "git_commit", "git_dirty", "device"} per (re)start
    host: dict | None = None  # host_info() of the segment that finished the run; None in records before it
    format: int = RECORD_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        data = upgrade_record(data)
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = sorted(name for name in required if name not in data)
        if missing:
            raise ValueError(f"run record lacks fields {missing}; was it written by icd_lib?")
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"record format {data.get('format')!r} is not one this icd_lib reads ({READABLE_FORMATS})")
        for name in METRIC_FIELDS:
            if not is_finite_number(data[name]) or data[name] < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {data[name]!r}")
        for name in ACCURACY_FIELDS:
            if not data[name] <= 100:
                raise ValueError(f"{name} is a percentage, but the record says {data[name]!r}")
        if not isinstance(data["seed"], int) or isinstance(data["seed"], bool) or data["seed"] < 0:
            raise ValueError(f"seed must be a non-negative integer, got {data['seed']!r}")
        if not isinstance(data["history"], list) or not data["history"]:
            raise ValueError("history must be a non-empty list of epochs")
        if not isinstance(data["best_epoch"], int) or not 1 <= data["best_epoch"] <= len(data["history"]):
            raise ValueError(f"best_epoch must be one of the {len(data['history'])} epochs, got {data['best_epoch']!r}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def experiment(self) -> tuple:
        """What defines the experiment this run belongs to: everything but the seed.

        From the spec where the record has one; format-1 records fall back to their configuration.
        """
        if self.spec is not None:
            return tuple(sorted((k, repr(v)) for k, v in self.spec.items() if k != "seed"))
        config = {k: v for k, v in self.config.items() if k not in ("seed", "run_name", "device", "num_workers")}
        return (("legacy", self.role, self.profile, self.dataset, self.train_size, repr(sorted(config.items()))),)


def upgrade_record(data: dict) -> dict:
    """``data`` in the current format's field names: records before format 3 call the trained
    network ``student`` at the top, in ``spec`` and in ``config``; their names and values stay."""
    if not isinstance(data, dict) or not isinstance(data.get("format"), int) or data["format"] >= 3:
        return data
    data = renamed_keys(data, FORMAT_2_NAMES)
    for part in ("spec", "config"):
        if isinstance(data.get(part), dict):
            data[part] = renamed_keys(data[part], FORMAT_2_NAMES)
    return data


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def provenance() -> dict:
    """Versions, git commit, command line and time stamp of the current process, for a record."""
    import torch
    import torchvision

    import icd_lib
    from icd_lib.utils import git_commit, git_dirty, installed_from

    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": np.__version__,
            "icd_lib": icd_lib.__version__,
        },
        "git_commit": git_commit() or installed_from()[1],  # a pip install from git records its commit
        "git_dirty": git_dirty(),
        "command": " ".join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


MACHINE_FIELDS = ("epoch_time_s", "load")


def without_machine_fields(history: list[dict]) -> list[dict]:
    """``history`` without ``MACHINE_FIELDS``: what two runs of one spec must agree on."""
    return [{k: v for k, v in entry.items() if k not in MACHINE_FIELDS} for entry in history]


def host_info(load_start: float | None) -> dict:
    """The record's ``host``: ``cpus`` (of the machine), ``threads`` (torch's, in this process),
    ``load_start`` (the 1-minute load average when training started, passed in) and ``load_end``
    (now). A load counts every process running or waiting for a CPU, this run's included; None
    where the system has no load average."""
    import torch

    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "load_start": load_start,
            "load_end": load_average()}


def portable_path(path: str | Path, results_dir: str | Path) -> str:
    """``path`` relative to the folder holding ``results_dir`` (a run's ``--out``), for records.

    Records are read from other working directories (a chapter runs in ``book/``, the CLI in the
    repository root), so paths in them are relative to ``out``, never to the caller's folder.
    """
    return os.path.relpath(Path(path).resolve(), Path(results_dir).resolve().parent)


def record_path(results_dir: str | Path, name: str) -> Path:
    """Where the record of the run called ``name`` lives."""
    return Path(results_dir) / f"{name}.json"


def save_record(record: RunRecord, results_dir: str | Path) -> Path:
    """Write ``record`` as ``<results_dir>/<name>.json`` (atomically) and return the path."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(record.to_dict(), f, indent=1, allow_nan=True)

    return atomic_write(record_path(results_dir, record.name), write,
                        "the run's checkpoints are intact, so nothing is trained again")


class RecordError(InputError):
    """A file that is not a valid run record, or not the record of the run it should be."""


def load_record(path: str | Path) -> RunRecord:
    """The record at ``path``: a ``RecordError`` naming what to delete unless it is a valid record
    whose run name is its file name. (That the name and the spec a record carries describe the
    same run is checked where runs are known: ``icd_lib.experiments.spec.check_record``.)"""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run record at {path}; train the run first (python -m icd_lib --help)")
    try:
        record = RunRecord.from_dict(json.loads(path.read_text()))
        if record.name != path.stem:
            raise ValueError(f"it is the record of run {record.name}, not of {path.stem}")
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise RecordError(f"{path} is not a valid run record ({err}); delete it and rerun the run") from err
    return record


def load_records(results_dir: str | Path = "results", **filters) -> list[RunRecord]:
    """All records in ``results_dir`` whose fields equal ``filters`` (``method="kd", seed=0``), by name."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"no results directory {results_dir}; run `python -m icd_lib sweep` to fill it")
    known = {f.name for f in fields(RunRecord)}
    unknown = sorted(set(filters) - known)
    if unknown:
        raise TypeError(f"unknown record fields {unknown} in filters; valid fields: {sorted(known)}")
    records = [load_record(p) for p in sorted(results_dir.glob("*.json"))]
    return [r for r in records if all(getattr(r, k) == v for k, v in filters.items())]


def aggregate(
    records: Iterable[RunRecord],
    metrics: Sequence[str] = ("best_top1", "last_top1"),
) -> list[dict]:
    """Group ``records`` by experiment (everything that defines a run but its seed; see
    ``RunRecord.experiment``) and summarise ``metrics`` over each group's seeds.

    One dict per group, in order of first appearance: ``name`` (of its first run), ``role``,
    ``profile``, ``dataset``, ``method``, ``model``, ``teacher``, ``n``, ``seeds``, and for each
    metric ``<metric>_mean`` and ``<metric>_std`` (sample standard deviation, ddof=1; NaN when
    n = 1). Two records of one experiment with the same seed are a ValueError.
    """
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.experiment(), []).append(record)
    rows = []
    for members in groups.values():
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            names = ", ".join(r.name for r in members)
            raise ValueError(f"runs {names} are one experiment with repeated seeds {sorted(seeds)}; remove the duplicates")
        first = members[0]
        row = {key: getattr(first, key) for key in ("name", "role", "profile", "dataset", "method", "model", "teacher")}
        row["n"] = len(members)
        row["seeds"] = sorted(seeds)
        for metric in metrics:
            values = np.array([getattr(r, metric) for r in members], dtype=float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return rows
