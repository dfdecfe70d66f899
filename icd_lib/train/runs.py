"""The runs the CLI and the chapters call: train a teacher, distil a student, evaluate, sweep.

Everything a run writes goes under one output folder ``out``::

    out/checkpoints/<run name>/last.pt, best.pt     (resumable; best = highest test top-1)
    out/results/<run name>.json                     (the run record)

Run names say what ran: ``book-teacher-resnet20-seed0``, ``book-icd+kd-resnet8-from-resnet20-seed1``,
``book-student-resnet8-seed0`` (the plain student); ``-e<N>`` is appended when ``epochs`` overrides
the profile. A run whose record exists is complete; one with only a checkpoint resumes from it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from icd_lib.config import Profile, get_profile
from icd_lib.data import ImageDataset, dataset_info, load_dataset, make_loader
from icd_lib.eval.metrics import accuracy, logit_correlation_difference, predict_logits
from icd_lib.models import build_model
from icd_lib.results.records import RunRecord, load_record, portable_path, record_path
from icd_lib.train.checkpoint import load_checkpoint, load_state
from icd_lib.train.distributed import DistributedContext
from icd_lib.train.loop import TrainConfig, default_lr, device_loader, train
from icd_lib.utils import get_device, seed_everything

DEFAULT_METHODS = ("student", "kd", "icd", "icd+kd")
TEACHER_SEED = 0  # each profile's teacher is trained once and shared by all students


def as_profile(profile: str | Profile | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def run_name(profile: Profile, method: str, model: str, teacher: str | None, seed: int, epochs: int | None = None) -> str:
    """The name of a run (see the module docstring); ``method="teacher"`` names a teacher run."""
    if method == "teacher":
        name = f"{profile.name}-teacher-{model}-seed{seed}"
        default_epochs = profile.teacher_epochs
    elif teacher is None:
        name = f"{profile.name}-{method}-{model}-seed{seed}"
        default_epochs = profile.student_epochs
    else:
        name = f"{profile.name}-{method}-{model}-from-{teacher}-seed{seed}"
        default_epochs = profile.student_epochs
    return name if epochs is None or epochs == default_epochs else f"{name}-e{epochs}"


def checkpoint_dir(out: str | Path, name: str) -> Path:
    return Path(out) / "checkpoints" / name


def results_dir(out: str | Path) -> Path:
    return Path(out) / "results"


def load_test_set(profile: Profile, data_root: str | Path | None = None) -> ImageDataset:
    """The profile's test set (a class-stratified subset of ``profile.test_size`` drawn with seed 0)."""
    return load_dataset(profile.dataset, train=False, root=data_root, size=profile.test_size, seed=0)


def load_splits(profile: Profile, train_size: int | None, data_root: str | Path | None = None) -> tuple[ImageDataset, ImageDataset]:
    """The profile's training set (a class-stratified subset of ``train_size``; None: all) and test set.

    Subsets are drawn with seed 0, so runs of every seed and method see the same images.
    """
    train_set = load_dataset(profile.dataset, train=True, root=data_root, size=train_size, seed=0)
    return train_set, load_test_set(profile, data_root)


def process_device(device: str | None, distributed: DistributedContext | None) -> str | None:
    """The device this process uses: the data-parallel context's, else ``device``."""
    return str(distributed.device) if distributed is not None else device


def new_model(name: str, dataset: str, seed: int) -> nn.Module:
    """A freshly initialised model ``name`` for ``dataset``'s classes and channels, initialised under ``seed``."""
    info = dataset_info(dataset)
    seed_everything(seed)
    return build_model(name, num_classes=info.num_classes, in_channels=info.in_channels)


@dataclass
class Teacher:
    """A trained teacher and where it came from."""

    model: nn.Module
    name: str
    checkpoint: Path
    top1: float


def load_trained(checkpoint: str | Path, dataset: str, name: str | None = None, device: str | None = None) -> tuple[nn.Module, dict]:
    """(model in eval mode on ``device``, checkpoint dict); the architecture defaults to the one the checkpoint records."""
    state = load_checkpoint(checkpoint)
    name = name or state["config"]["student"]
    model = new_model(name, dataset, 0)
    load_state(model, state["student"], checkpoint, f"model {name!r}")
    return model.to(get_device(device)).eval(), state


def load_teacher(profile: str | Profile | None, checkpoint: str | Path, name: str | None = None, device: str | None = None) -> Teacher:
    """The teacher stored in ``checkpoint`` (architecture ``name``, default: the one it records)."""
    model, state = load_trained(checkpoint, as_profile(profile).dataset, name, device)
    return Teacher(model, name or state["config"]["student"], Path(checkpoint), state["history"][-1]["test_top1"])


def _run(
    profile: Profile,
    method: str,
    model_name: str,
    seed: int,
    epochs: int,
    train_size: int | None,
    teacher: Teacher | None,
    out: str | Path,
    data_root: str | Path | None,
    device: str | None,
    fast: bool,
    progress: bool,
    method_options: dict | None,
    name: str,
    distributed: DistributedContext | None,
) -> RunRecord:
    """One run of ``model_name`` on the profile's data (a teacher run when ``method == "teacher"``).

    The fast path reads training and test data from the device; data parallelism reads the
    training data from the device too (the one loader that shards batches over processes).
    """
    config = TrainConfig(
        method="student" if method == "teacher" else method,
        method_options=method_options or {},
        student=model_name,
        teacher=teacher.name if teacher else None,
        epochs=epochs,
        batch_size=profile.batch_size,
        lr=default_lr(model_name, profile.lr),
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
        milestones=profile.milestones(epochs),
        lr_decay_rate=profile.lr_decay_rate,
        seed=seed,
        device=device,
        num_workers=profile.num_workers,
        run_name=name,
        fast=fast,
    )
    train_set, test_set = load_splits(profile, train_size, data_root)
    train_data, test_data = train_set, test_set
    resolved = distributed.device if distributed is not None else get_device(device)
    if fast or distributed is not None:
        train_data = device_loader(train_set, config, True, resolved, distributed)
    if fast:
        test_data = device_loader(test_set, config, False, resolved)
    run_info = {"role": "teacher" if method == "teacher" else "student", "profile": profile.name, "dataset": profile.dataset,
                "train_size": len(train_set), "test_size": len(test_set)}
    if teacher is not None:
        run_info.update(teacher_checkpoint=portable_path(teacher.checkpoint, results_dir(out)), teacher_top1=teacher.top1)
    return train(
        config,
        new_model(model_name, profile.dataset, seed),
        train_data,
        test_data,
        teacher.model if teacher else None,
        out_dir=checkpoint_dir(out, name),
        results_dir=results_dir(out),
        run_info=run_info,
        progress=progress,
        distributed=distributed,
    )


def train_teacher(
    profile: str | Profile | None = None,
    seed: int = TEACHER_SEED,
    out: str | Path = ".",
    teacher: str | None = None,
    epochs: int | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    fast: bool = False,
    progress: bool = True,
    distributed: DistributedContext | None = None,
) -> RunRecord:
    """Train the profile's teacher (or model ``teacher``) with cross-entropy; resumes an interrupted run.

    ``distributed``: this process's place in a data-parallel job (``init_distributed()``, under torchrun).
    """
    profile = as_profile(profile)
    model_name = teacher or profile.teacher
    epochs = epochs or profile.teacher_epochs
    name = run_name(profile, "teacher", model_name, None, seed, epochs)
    return _run(profile, "teacher", model_name, seed, epochs, profile.teacher_train_size, None,
                out, data_root, device, fast, progress, None, name, distributed)


def ensure_teacher(
    profile: str | Profile | None = None,
    out: str | Path = ".",
    teacher: str | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    fast: bool = False,
    progress: bool = True,
    distributed: DistributedContext | None = None,
) -> Teacher:
    """The profile's trained teacher: loaded from ``out`` when its run is complete, else trained (or resumed) first."""
    profile = as_profile(profile)
    model_name = teacher or profile.teacher
    name = run_name(profile, "teacher", model_name, None, TEACHER_SEED)
    if not record_path(results_dir(out), name).is_file():
        train_teacher(profile, TEACHER_SEED, out, model_name, None, data_root, device, fast, progress, distributed)
    return load_teacher(profile, checkpoint_dir(out, name) / "best.pt", model_name, process_device(device, distributed))


def distill(
    profile: str | Profile | None = None,
    method: str = "icd+kd",
    seed: int = 0,
    teacher_ckpt: str | Path | None = None,
    out: str | Path = ".",
    student: str | None = None,
    teacher: str | None = None,
    epochs: int | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    fast: bool = False,
    progress: bool = True,
    method_options: dict | None = None,
    distributed: DistributedContext | None = None,
) -> RunRecord:
    """Train the profile's student (or ``student``) with ``method`` (a key of ``METHOD_WEIGHTS``).

    The teacher is ``teacher_ckpt`` when given, else the profile's teacher from ``out`` (trained
    first when missing, see ``ensure_teacher``). ``method="student"`` trains the plain student
    with cross-entropy only and needs no teacher. ``distributed``: as in ``train_teacher``.
    """
    profile = as_profile(profile)
    student = student or profile.student
    epochs = epochs or profile.student_epochs
    trained_teacher = None
    if method != "student":
        if teacher_ckpt is not None:
            trained_teacher = load_teacher(profile, teacher_ckpt, teacher, process_device(device, distributed))
        else:
            trained_teacher = ensure_teacher(profile, out, teacher, data_root, device, fast, progress, distributed)
    name = run_name(profile, method, student, trained_teacher.name if trained_teacher else None, seed, epochs)
    return _run(profile, method, student, seed, epochs, profile.student_train_size, trained_teacher,
                out, data_root, device, fast, progress, method_options, name, distributed)


def sweep(
    profile: str | Profile | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] | None = None,
    out: str | Path = ".",
    student: str | None = None,
    teacher: str | None = None,
    epochs: int | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
    fast: bool = False,
    progress: bool = True,
) -> list[RunRecord]:
    """Every method x seed (default seeds: the profile's), skipping runs whose record already exists."""
    profile = as_profile(profile)
    student = student or profile.student
    records = []
    for method in methods:
        for seed in profile.seeds if seeds is None else seeds:
            teacher_name = None if method == "student" else teacher or profile.teacher
            path = record_path(results_dir(out), run_name(profile, method, student, teacher_name, seed, epochs))
            if path.is_file():
                records.append(load_record(path))
                continue
            records.append(distill(profile, method, seed, None, out, student, teacher, epochs, data_root, device, fast, progress))
    return records


def evaluate(
    checkpoint: str | Path,
    profile: str | Profile | None = None,
    model: str | None = None,
    teacher_ckpt: str | Path | None = None,
    teacher: str | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Test accuracy of the model in ``checkpoint`` on the profile's test set.

    ``model`` defaults to the architecture recorded in the checkpoint. With ``teacher_ckpt`` also
    the mean off-diagonal class-mean logit difference to that teacher (paper Fig. 1).
    """
    profile = as_profile(profile)
    network, _ = load_trained(checkpoint, profile.dataset, model, device)
    loader = make_loader(load_test_set(profile, data_root), batch_size=256, train=False)
    result = accuracy(network, loader)
    if teacher_ckpt is not None:
        trained = load_teacher(profile, teacher_ckpt, teacher, device)
        student_logits, labels = predict_logits(network, loader)
        teacher_logits, _ = predict_logits(trained.model, loader)
        num_classes = dataset_info(profile.dataset).num_classes
        result["logit_difference"] = logit_correlation_difference(student_logits, teacher_logits, labels, num_classes).mean_offdiag
    return result
