"""Running a ``RunSpec``: the one function the CLI, the plan runner and the chapters call.

A run is *what* (the ``RunSpec``) plus *how* (one ``RunOptions`` value: output folder, data root,
device, fast path, progress, data parallelism); every function here takes the two apart. Everything
a run writes goes under ``how.out`` (``icd_lib.train.options``)::

    out/checkpoints/<run name>/last.pt, best.pt, .lock   (resumable; see icd_lib.train.loop)
    out/results/<run name>.json                          (the run record)

A run is complete when its record holds the final evaluation (``icd_lib.eval.final``). Running a
complete spec loads its record; an interrupted one resumes from ``last.pt``; a record whose
training finished but whose evaluation is missing (a kill in between, or a record written before
records carried evaluations) is completed from ``last.pt`` without training again. A student's
teacher run is executed first when it is not complete. One process at a time trains a run (see
``icd_lib.experiments.lock``).
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from icd_lib.config import get_profile
from icd_lib.data import ImageDataset, dataset_info, load_dataset
from icd_lib.eval.final import final_evaluation
from icd_lib.experiments.lock import RunLock, missing_folders, remove_empty_folders
from icd_lib.experiments.spec import TEACHER, RunSpec, load_run_record, make_spec
from icd_lib.models import build_model
from icd_lib.results.records import RECORD_FORMAT, RunRecord, portable_path, provenance, record_path, save_record
from icd_lib.train.checkpoint import CheckpointError, check_same_config, load_checkpoint, load_state, sync_best_checkpoint
from icd_lib.train.loop import train
from icd_lib.train.options import RunOptions, checkpoint_dir, results_dir
from icd_lib.train.run_config import FORMER_OPTION_FIELDS
from icd_lib.utils import get_device, remove_partial_writes, seed_everything


def run_options(how: RunOptions | str | Path) -> RunOptions:
    """``how`` as ``RunOptions``: a path is short for ``RunOptions(out=path)``; an output folder is required."""
    how = how if isinstance(how, RunOptions) else RunOptions(out=how)
    if how.out is None:
        raise ValueError("a run needs an output folder: RunOptions(out=...)")
    return how


def spec_record_path(out: str | Path, spec: RunSpec) -> Path:
    """Where the record of ``spec`` lives under the output folder ``out``."""
    return record_path(results_dir(out), spec.name)


def complete_record(spec: RunSpec, out: str | Path) -> RunRecord | None:
    """The record of ``spec`` under ``out`` if the run is complete (its record holds the final
    evaluation), else None: the one definition of a complete run."""
    path = spec_record_path(out, spec)
    if not path.is_file():
        return None
    record = load_run_record(path)
    return record if record.evaluation is not None else None


def is_complete(spec: RunSpec, out: str | Path) -> bool:
    """Whether ``spec`` has a record with its final evaluation under ``out``."""
    return complete_record(spec, out) is not None


def spec_records(specs: Iterable[RunSpec], out: str | Path) -> tuple[list[RunRecord], list[str]]:
    """(complete records, names of the runs still missing) of ``specs`` under ``out``, in their order."""
    found, missing = [], []
    for spec in specs:
        record = complete_record(spec, out)
        if record is None:
            missing.append(spec.name)
        else:
            found.append(record)
    return found, missing


def load_test_set(spec: RunSpec, data_root: str | Path | None = None) -> ImageDataset:
    """The test set of ``spec``'s profile and dataset (a class-stratified subset drawn with seed 0;
    content/style test data is always in random style)."""
    extra = {"style_mode": "random"} if spec.dataset == "content_style" else {}
    return load_dataset(spec.dataset, train=False, root=data_root, size=spec.profile_settings.test_size, seed=0, **extra)


def load_train_set(spec: RunSpec, data_root: str | Path | None = None) -> ImageDataset:
    """``spec``'s training set: a class-stratified subset of ``train_size`` drawn with seed 0, so
    runs of every seed and method see the same images (and, on content/style data, the same styles)."""
    extra = {"style_mode": spec.style_mode} if spec.dataset == "content_style" else {}
    return load_dataset(spec.dataset, train=True, root=data_root, size=spec.train_size, seed=0, **extra)


def new_model(name: str, dataset: str, seed: int) -> nn.Module:
    """A freshly initialised model ``name`` for ``dataset``'s classes and channels, initialised under ``seed``."""
    info = dataset_info(dataset)
    seed_everything(seed)
    return build_model(name, num_classes=info.num_classes, in_channels=info.in_channels)


def load_trained(checkpoint: str | Path, dataset: str, name: str | None = None, device: str | None = None) -> tuple[nn.Module, dict]:
    """(model in eval mode on ``device``, checkpoint dict); the architecture defaults to the one the checkpoint records.

    A checkpoint that records the dataset it was trained on must match ``dataset``.
    """
    state = load_checkpoint(checkpoint)
    recorded = state.get("run_info", {}).get("dataset")
    if recorded is not None and recorded != dataset:
        raise CheckpointError(
            f"{checkpoint} holds a model trained on {recorded!r}, not {dataset!r}: use a teacher trained on {dataset!r}"
        )
    recorded_model = state["config"]["model"]
    name = name or recorded_model
    if name != recorded_model:
        raise CheckpointError(f"{checkpoint} holds a {recorded_model!r} model, not {name!r}: pass {recorded_model!r} "
                              f"as the architecture, or the checkpoint of a {name!r} model")
    model = new_model(name, dataset, 0)
    load_state(model, state["model"], checkpoint, f"{name!r} model for {dataset!r}")
    return model.to(get_device(device)).eval(), state


@dataclass
class Teacher:
    """A trained teacher and where it came from."""

    model: nn.Module
    name: str
    checkpoint: Path
    top1: float


def ensure_writable(folder: Path) -> None:
    """``PermissionError`` with a one-line message unless files can be created in ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to {folder} ({err.strerror or err}); choose a writable --out") from None


def load_teacher(spec: RunSpec, out: str | Path, device: str | None = None) -> Teacher:
    """The model trained by teacher run ``spec`` (its last epoch), from ``out``."""
    path = checkpoint_dir(out, spec.name) / "last.pt"
    if not path.is_file():
        raise CheckpointError(
            f"teacher run {spec.name} is recorded but its checkpoint {path} is missing: restore it "
            f"(git checkout -- {path.parent}) or delete {spec_record_path(out, spec)} to train the teacher again"
        )
    model, state = load_trained(path, spec.dataset, spec.model, device)
    check_teacher_checkpoint(spec, state, path, out)
    return Teacher(model, spec.model, path, state["history"][-1]["test_top1"])


def check_teacher_checkpoint(spec: RunSpec, state: dict, path: Path, out: str | Path) -> None:
    """``CheckpointError`` unless checkpoint ``state`` (read from ``path``) was written by teacher run
    ``spec``: its run name and its training history, epoch by epoch, are those of the run's record."""
    record = spec_record_path(out, spec)
    if state["config"].get("run_name") != spec.name or state["history"] != load_run_record(record).history:
        raise CheckpointError(
            f"{path} is not the checkpoint of teacher run {spec.name} (its run name or training history differs "
            f"from {record}): delete {path.parent} and {record} to train the teacher again"
        )


def ensure_teacher(spec: RunSpec, how: RunOptions | str | Path) -> Teacher:
    """The teacher of run ``spec`` (or teacher run ``spec`` itself), executed first when not complete."""
    how = run_options(how)
    teacher_spec = spec if spec.is_teacher else spec.teacher_spec()
    if teacher_spec is None:
        raise ValueError(f"run {spec.name} has no teacher")
    execute(teacher_spec, how)
    return load_teacher(teacher_spec, how.out, how.device)


def execute(spec: RunSpec, how: RunOptions | str | Path) -> RunRecord:
    """Run ``spec`` to completion as ``how`` says and return its complete record (see the module doc).

    ``how``: a ``RunOptions`` (a path is short for ``RunOptions(out=path)``). Under
    ``how.distributed`` rank 0 alone takes the run's lock and evaluates. A run that fails before
    writing anything leaves no folder behind.
    """
    how = run_options(how)
    record = complete_record(spec, how.out)
    if record is not None:
        sync_best_checkpoint(checkpoint_dir(how.out, spec.name))  # a deleted or stale best.pt comes back
        return record
    new_folders = missing_folders(results_dir(how.out))
    try:
        ensure_writable(results_dir(how.out))
        teacher = None if spec.teacher is None else ensure_teacher(spec, how)
        return execute_locked(spec, teacher, how)
    except BaseException:
        remove_empty_folders(new_folders)
        raise


def execute_locked(spec: RunSpec, teacher: Teacher | None, how: RunOptions) -> RunRecord:
    """``execute``'s part under the run's lock: train what is left, evaluate, write the record."""
    with RunLock(checkpoint_dir(how.out, spec.name)) if how.is_main else nullcontext():
        record = complete_record(spec, how.out)
        if record is not None:  # another process finished it while this one waited for the teacher
            return record
        remove_partial_writes(spec_record_path(how.out, spec))  # a record write killed mid-way
        train_set, test_set = load_train_set(spec, how.data_root), load_test_set(spec, how.data_root)
        record = finished_record(spec, how.out)
        if record is None:
            record = train_spec(spec, (train_set, test_set), teacher, how)
        if not how.is_main:
            return record
        return add_final_evaluation(spec, record, teacher, test_set, how)


def reference_teacher(spec: RunSpec, out: str | Path, device: str | None = None) -> Teacher | None:
    """The teacher a student is measured against: its own, or for a plain student the profile's
    teacher of the same dataset (when that run is complete), so the correlation figure and the
    eq. 3 distance have a plain-student baseline. None for teachers."""
    if spec.is_teacher:
        return None
    if spec.teacher is not None:
        return load_teacher(spec.teacher_spec(), out, device)
    teacher = make_spec(spec.profile, TEACHER, dataset=spec.dataset,
                        style_mode=None if spec.style_mode is None else "random")
    return load_teacher(teacher, out, device) if is_complete(teacher, out) else None


def add_final_evaluation(spec: RunSpec, record: RunRecord, teacher: Teacher | None, test_set: ImageDataset,
                         how: RunOptions) -> RunRecord:
    """Measure ``record``'s final evaluation (``icd_lib.eval.final``) from the run's ``last.pt`` and save the record."""
    model, _ = load_trained(checkpoint_dir(how.out, spec.name) / "last.pt", spec.dataset, spec.model, how.device)
    teacher = teacher or reference_teacher(spec, how.out, how.device)
    record.evaluation = final_evaluation(model, teacher.model if teacher else None, test_set, spec.dataset)
    record.evaluated_commit = provenance()["git_commit"]
    save_record(record, results_dir(how.out))
    return record


def finished_record(spec: RunSpec, out: str | Path) -> RunRecord | None:
    """The record of ``spec`` when its training is finished but its evaluation is missing, with the
    spec filled in; None when the run still has epochs to train."""
    path = spec_record_path(out, spec)
    last = checkpoint_dir(out, spec.name) / "last.pt"
    if not path.is_file() or not last.is_file():
        return None
    record = load_run_record(path)
    if sum(e.get("stage", "main") == "main" for e in record.history) != spec.epochs or load_checkpoint(last)["epoch"] != spec.epochs:
        return None
    check_same_config(record.config, spec.train_config().to_dict(), path, ignore=FORMER_OPTION_FIELDS)
    sync_best_checkpoint(checkpoint_dir(out, spec.name))
    record.spec, record.format = spec.identity(), RECORD_FORMAT
    return record


def train_spec(spec: RunSpec, data: tuple[ImageDataset, ImageDataset], teacher: Teacher | None,
               how: RunOptions) -> RunRecord:
    """Train ``spec`` on ``data`` (training set, test set), resuming from its ``last.pt``; the
    record it writes has no evaluation yet. ``DataLoader`` workers default to the profile's."""
    train_set, test_set = data
    if how.num_workers is None:
        how = replace(how, num_workers=spec.profile_settings.num_workers)
    run_info = {"role": "teacher" if spec.is_teacher else "student", "profile": spec.profile, "dataset": spec.dataset,
                "train_size": len(train_set), "test_size": len(test_set), "spec": spec.identity()}
    if teacher is not None:
        run_info.update(teacher_checkpoint=portable_path(teacher.checkpoint, results_dir(how.out)), teacher_top1=teacher.top1)
    model = new_model(spec.model, spec.dataset, spec.seed)
    return train(spec.train_config(), model, train_set, test_set, teacher.model if teacher else None, how, run_info)


def checkpoint_accuracy(checkpoint: str | Path, profile: str, model: str | None = None,
                        teacher_ckpt: str | Path | None = None, data_root: str | Path | None = None,
                        device: str | None = None) -> dict[str, float]:
    """Test accuracy of the model in ``checkpoint`` on its dataset's test set (as the profile draws it).

    The dataset is the one the checkpoint records (else the profile's). With ``teacher_ckpt`` also
    the mean off-diagonal class-mean logit difference to that teacher (paper Fig. 1).
    """
    from icd_lib.eval.metrics import accuracy, logit_correlation_difference, predict_logits
    from icd_lib.data import make_loader

    dataset = load_checkpoint(checkpoint).get("run_info", {}).get("dataset") or get_profile(profile).dataset
    network, _ = load_trained(checkpoint, dataset, model, device)
    loader = make_loader(load_test_set(make_spec(profile, "student", dataset=dataset), data_root), batch_size=256, train=False)
    result = accuracy(network, loader)
    if teacher_ckpt is not None:
        teacher, _ = load_trained(teacher_ckpt, dataset, None, device)
        student_logits, labels = predict_logits(network, loader)
        teacher_logits, _ = predict_logits(teacher, loader)
        result["logit_difference"] = logit_correlation_difference(
            student_logits, teacher_logits, labels, dataset_info(dataset).num_classes).mean_offdiag
    return result


def execute_all(specs: Iterable[RunSpec], how: RunOptions | str | Path) -> list[RunRecord]:
    """``execute`` each spec in turn (complete ones are read back)."""
    return [execute(spec, how) for spec in specs]
