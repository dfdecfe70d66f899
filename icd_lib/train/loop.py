"""The one training loop, for teachers and students alike.

A teacher run is a student run with weights ``{"ce": 1}`` and no teacher. Each step:
teacher(x) under ``no_grad`` in eval mode -> student(x) -> ``Objective`` (the paper's eq. 13 as
weights) -> backward -> one SGD step over the student's and the objective's parameters (heads,
``tau``). Metrics accumulate on the device and are read once per epoch. After every epoch the
loop evaluates on the test set, writes ``last.pt`` (and ``best.pt`` when top-1 improved), and a
later call with the same configuration and ``out_dir`` resumes from ``last.pt`` and ends with
exactly the metrics of an uninterrupted run (on the CPU).

Data parallelism (``train(..., distributed=init_distributed())`` in every process torchrun
starts; ``icd_lib.train.distributed``): each process trains on its share of every global batch of
``config.batch_size`` images, read from a ``GPUResidentLoader`` (on the CPU too: it is the one
loader that shards batches; the plain ``DataLoader`` path is single-process only). DDP averages
the gradients, ICD takes its negatives from the global batch, and the epoch's loss sums are added
over the processes, so the history is the global batch's. Rank 0 alone evaluates on the test set,
with the weights and BatchNorm statistics it checkpoints (DDP keeps the weights equal everywhere;
each process updates its own running statistics from its own batches), and sends the accuracy to
the others, so every process returns the same record; rank 0 alone writes checkpoints, the record,
progress bars and per-epoch logs.

Initialisation stages (``icd_lib.losses.base.InitStage``, declared by methods such as AB, FT and
FSP): before the main epochs, the loop runs ``stage.epochs(config.epochs)`` stage epochs that
train only the stage's modules (the rest in eval mode) on the stage's loss, with an SGD optimizer
of their own (the stage's learning rate, else the run's; the run's momentum and weight decay) and
no learning-rate schedule. Stage epoch s reads the training data in the order of loader epoch
``config.epochs + s``, one the main epochs never use, so main epoch e sees the same images in the
same order as in a run without a stage. Stage epochs are evaluated, logged and checkpointed like
main epochs (a killed stage resumes exactly); their history entries carry ``"stage": "init"``
and their own ``epoch`` count from 1. ``epochs``, the best and the last epoch of the record and
``last.pt``'s ``epoch`` count main epochs only. Afterwards the stage's ``frozen_after`` modules
are left out of the main optimizer and kept in eval mode without gradients. The loop never
names a method: it asks the objective for its stage. Stages are single-process only.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

import icd_lib.losses  # noqa: F401  (registers the loss terms)
from icd_lib.config import METHOD_WEIGHTS, get_profile, method_weights
from icd_lib.data.images import ImageDataset
from icd_lib.data.loaders import make_loader
from icd_lib.eval.metrics import accuracy
from icd_lib.losses.base import InitStage, Objective
from icd_lib.models import probe_shapes
from icd_lib.results.records import RunRecord, host_info, portable_path, provenance, save_record
from icd_lib.train.checkpoint import (
    CheckpointError,
    best_state,
    capture_rng_state,
    check_same_config,
    is_main_epoch,
    load_checkpoint,
    load_state,
    remove_stale_temporaries,
    require_keys,
    restore_rng_state,
    save_checkpoint,
    sync_best_checkpoint,
)
from icd_lib.train.distributed import DistributedContext, per_process_batch_size, wrap_for_ddp
from icd_lib.train.fast import (
    FastSettings,
    GPUResidentLoader,
    autocast,
    compile_model,
    float32_outputs,
    prepare_models,
    resolve_fast_settings,
)
from icd_lib.utils import device_description, get_device, load_average, seed_everything

log = logging.getLogger(__name__)

# Models trained with lr 0.01 instead of 0.05 in the paper's recipe (RepDistiller, train_student.py).
LOW_LR_MODELS = frozenset({"mobilenetv2", "shufflev1", "shufflev2"})
# Configuration fields that may change between a run and its resumption.
RESUMABLE_DIFFERENCES = frozenset({"device", "num_workers"})


def default_lr(model_name: str, base_lr: float = 0.05) -> float:
    """The paper's learning rate for training ``model_name``: 0.01 for MobileNetV2/ShuffleNets, else ``base_lr``."""
    return 0.01 if model_name.lower().replace("_", "") in LOW_LR_MODELS else base_lr


@dataclass
class TrainConfig:
    """Everything that decides a run. Defaults are the paper's CIFAR-100 recipe (RepDistiller's).

    ``weights`` default to ``METHOD_WEIGHTS[method]``; ``milestones`` default to the paper's
    150/180/210 of 240 scaled to ``epochs``. Both are filled in at construction, so the saved
    configuration says exactly what ran.

    Fast path (``icd_lib.train.fast``): ``amp`` (bf16 autocast), ``channels_last``: ``None``
    follows ``fast`` (the device's best choice when ``fast``, off otherwise); ``compile`` and
    ``cuda_graphs`` are off unless asked for. ``fast`` itself makes ``icd_lib.experiments.runs`` use
    the device-resident loader.
    """

    method: str = "student"
    weights: dict[str, float] | None = None
    method_options: dict[str, dict] = field(default_factory=dict)
    student: str = "student"  # model names, for records and checkpoint checks
    teacher: str | None = None
    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] | None = None
    lr_decay_rate: float = 0.1
    seed: int = 0
    device: str | None = None
    num_workers: int = 0
    run_name: str = "run"
    fast: bool = False
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self):
        if self.weights is None:
            if self.method not in METHOD_WEIGHTS:
                raise ValueError(
                    f"unknown method {self.method!r} and no explicit weights; valid methods: {', '.join(METHOD_WEIGHTS)}"
                )
            self.weights = method_weights(self.method)
        self.weights = {k: float(v) for k, v in self.weights.items()}
        unknown = set(self.method_options) - set(self.weights)
        if unknown:
            raise ValueError(f"method_options for {sorted(unknown)}, which are not terms of weights {self.weights}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.milestones is None:
            self.milestones = get_profile("paper").milestones(self.epochs)
        self.milestones = tuple(sorted(int(m) for m in self.milestones))
        if any(not 0 < m < self.epochs for m in self.milestones):
            raise ValueError(f"milestones must lie strictly between 0 and epochs={self.epochs}, got {self.milestones}")

    def to_dict(self) -> dict:
        """JSON-ready: as ``json.loads(json.dumps(...))`` gives it back."""
        return {**asdict(self), "milestones": list(self.milestones)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**data)


def fast_settings(config: TrainConfig, device: torch.device) -> FastSettings:
    """The fast-path features a run uses on ``device``: ``None`` fields follow ``config.fast``."""
    default = None if config.fast else False
    return resolve_fast_settings(
        device,
        amp=default if config.amp is None else config.amp,
        channels_last=default if config.channels_last is None else config.channels_last,
        compile=config.compile,
        cuda_graphs=config.cuda_graphs,
    )


def fingerprint(model: nn.Module | None) -> float | None:
    """A number that changes when any weight or buffer of ``model`` changes (float64 sum of |values|)."""
    if model is None:
        return None
    return float(sum(t.detach().double().abs().sum() for t in model.state_dict().values() if t.is_floating_point()))


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


def as_loader(data, config: TrainConfig, train: bool) -> Iterable:
    """``data`` as an iterable of (x, y[, index]) batches: a Dataset goes through ``make_loader``
    (shuffled per (seed, epoch) when ``train``), a loader is passed through."""
    if isinstance(data, Dataset):
        return make_loader(data, config.batch_size, train=train, num_workers=config.num_workers, seed=config.seed)
    if isinstance(data, Iterable):
        return data
    raise TypeError(f"expected a torch Dataset or an iterable of batches, got {type(data).__name__}")


def device_loader(
    dataset: ImageDataset,
    config: TrainConfig,
    train: bool,
    device: torch.device,
    distributed: DistributedContext | None = None,
) -> GPUResidentLoader:
    """``dataset`` as the fast path's device-resident loader, with the run's batch size, seed and
    memory format (``GPUResidentLoader.from_dataset``; grey images are served as ``len(mean)`` channels).

    With ``distributed`` (training data): this process's share of every global batch,
    ``per_process_batch_size(config.batch_size, world_size)`` images.
    """
    batch_size, shard = config.batch_size, {}
    if distributed is not None:
        batch_size = per_process_batch_size(config.batch_size, distributed.world_size)
        shard = {"rank": distributed.rank, "world_size": distributed.world_size}
    return GPUResidentLoader.from_dataset(
        dataset, batch_size, train=train, device=device, seed=config.seed,
        channels_last=fast_settings(config, device).channels_last, **shard,
    )


def distributed_train_loader(data, config: TrainConfig, distributed: DistributedContext, device: torch.device) -> GPUResidentLoader:
    """This process's training batches under data parallelism: an ``ImageDataset`` becomes its
    ``device_loader``; a ``GPUResidentLoader`` must already be this process's share."""
    if isinstance(data, ImageDataset):
        return device_loader(data, config, True, device, distributed)
    if not isinstance(data, GPUResidentLoader):
        raise TypeError(
            "data-parallel training reads its batches from a GPUResidentLoader; pass an icd_lib.data.ImageDataset "
            f"(from load_dataset) or a GPUResidentLoader built with rank= and world_size=, not {type(data).__name__}"
        )
    batch_size = per_process_batch_size(config.batch_size, distributed.world_size)
    wanted = (distributed.rank, distributed.world_size, batch_size)
    if (data.rank, data.world_size, data.batch_size) != wanted:
        raise ValueError(
            f"the training loader serves rank {data.rank} of {data.world_size} with batches of {data.batch_size}, but this "
            f"process is rank {distributed.rank} of {distributed.world_size} and its share of the batch of "
            f"{config.batch_size} is {batch_size}; build it with rank=, world_size= and batch_size=per_process_batch_size(...)"
        )
    return data


def step_modules(student: nn.Module, teacher: nn.Module | None, objective: Objective, settings: FastSettings,
                 distributed: DistributedContext | None):
    """(student_forward, teacher_forward, objective_forward): what each step calls.

    Single process: ``prepare_models`` and the objective itself. Data parallel: the student and
    the objective wrapped by ``wrap_for_ddp`` (ICD's negatives then come from the global batch),
    compiled after wrapping when ``settings.compile``. Either way the optimizer and checkpoints
    use the original modules, which share their parameters with these.
    """
    if distributed is None:
        return (*prepare_models(student, teacher, settings), objective)
    _, teacher_forward = prepare_models(student, teacher, replace(settings, compile=False))
    student_forward, objective_forward = wrap_for_ddp(student, objective, distributed)
    if settings.compile:
        student_forward, teacher_forward = compile_model(student_forward, settings), compile_model(teacher_forward, settings)
    return student_forward, teacher_forward, objective_forward


def evaluate_test_set(student: nn.Module, test_loader: Iterable, distributed: DistributedContext | None) -> dict[str, float]:
    """{"top1", "top5"} in percent; under data parallelism measured by rank 0 and sent to every process."""
    if distributed is None:
        return accuracy(student, test_loader, topk=(1, 5))
    result = [accuracy(student, test_loader, topk=(1, 5)) if distributed.is_main else None]
    dist.broadcast_object_list(result, src=0)
    return result[0]


RUN_INFO_KEYS = frozenset(
    {"role", "profile", "dataset", "train_size", "test_size", "teacher_checkpoint", "teacher_top1", "spec"}
)
RESUME_KEYS = ("objective", "optimizer", "scheduler", "rng", "best_top1", "elapsed_s", "teacher_fingerprint")


@dataclass
class Run:
    """What one call of ``train`` works with, built once by ``prepare_run``."""

    config: TrainConfig
    device: torch.device
    distributed: DistributedContext | None
    settings: FastSettings
    student: nn.Module
    teacher: nn.Module | None
    objective: Objective
    forwards: tuple  # (student, teacher, objective) as each step calls them; see ``step_modules``
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: Iterable
    test_loader: Iterable
    stage: InitStage | None = None  # the objective's initialisation stage, if any
    stage_optimizer: torch.optim.Optimizer | None = None

    @property
    def is_main(self) -> bool:
        return self.distributed is None or self.distributed.is_main

    @property
    def stage_epochs(self) -> int:
        """How many initialisation-stage epochs precede the main epochs (0 without a stage)."""
        return 0 if self.stage is None else self.stage.epochs(self.config.epochs)


@dataclass
class Progress:
    """Where training stands: what ``last.pt`` saves and a resumed run restores."""

    history: list[dict] = field(default_factory=list)
    best_top1: float = -1.0
    best_epoch: int = 0
    best_student: dict | None = None
    elapsed_before: float = 0.0  # seconds in earlier segments of a resumed run
    segments: list[dict] = field(default_factory=list)


def run_device(config: TrainConfig, distributed: DistributedContext | None) -> torch.device:
    if distributed is None:
        return get_device(config.device)
    if config.device is not None and torch.device(config.device).type != distributed.device.type:
        raise ValueError(
            f"config.device={config.device!r}, but this data-parallel process runs on {distributed.device}; "
            "leave config.device None (each process uses the device init_distributed chose)"
        )
    return distributed.device


def prepare_run(config: TrainConfig, student: nn.Module, train_data, test_data, teacher: nn.Module | None,
                distributed: DistributedContext | None) -> Run:
    """Device, loaders, the objective built from the models' shapes, the step modules, optimizer, schedule."""
    device = run_device(config, distributed)
    settings = fast_settings(config, device)
    for note in settings.notes:
        log.info(note)
    seed_everything(config.seed)
    if distributed is None:
        train_loader = as_loader(train_data, config, train=True)
    else:
        train_loader = distributed_train_loader(train_data, config, distributed, device)
    test_loader = as_loader(test_data, config, train=False)
    student.to(device)
    if teacher is not None:
        teacher.to(device)
    example = test_data[0][0] if isinstance(test_data, Dataset) else next(iter(test_loader))[0][0]
    input_shape = tuple(example.shape)
    objective = Objective(
        config.weights, probe_shapes(student, input_shape),
        probe_shapes(teacher, input_shape) if teacher is not None else None,
        num_examples(train_data), config.method_options, train_labels=training_labels(train_data),
    ).to(device)
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"the weights {config.weights} distil from a teacher: pass teacher=<a trained model>")
    if not objective.needs_teacher:
        teacher = None
    stage, stage_optimizer, frozen = objective.init_stage(student), None, set()
    if stage is not None:
        if distributed is not None:
            raise ValueError(
                f"the weights {config.weights} include a method with an initialisation stage, which the loop runs in "
                "a single process only; train this run without torchrun"
            )
        frozen = {id(p) for p in stage.frozen_parameters()}
        stage_optimizer = torch.optim.SGD(
            stage.parameters(), lr=config.lr if stage.lr is None else stage.lr,
            momentum=config.momentum, weight_decay=config.weight_decay,
        )
    optimizer = torch.optim.SGD(
        [p for p in [*student.parameters(), *objective.parameters()] if id(p) not in frozen],
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.lr_decay_rate)
    forwards = step_modules(student, teacher, objective, settings, distributed)
    return Run(config, device, distributed, settings, student, teacher, objective, forwards, optimizer, scheduler,
               train_loader, test_loader, stage, stage_optimizer)


def resume(run: Run, last_path: Path) -> Progress:
    """Restore ``run`` from ``last_path`` (same configuration and teacher, else ``CheckpointError``)."""
    state = load_checkpoint(last_path)
    require_keys(state, RESUME_KEYS, last_path)
    check_same_config(state["config"], run.config.to_dict(), last_path, ignore=RESUMABLE_DIFFERENCES)
    if state["teacher_fingerprint"] != fingerprint(run.teacher):
        raise CheckpointError(
            f"checkpoint {last_path} was trained with a different teacher (weights differ); resume with "
            "the same teacher checkpoint, or choose another output folder to start a new run"
        )
    modules = [(run.student, "student"), (run.objective, "objective"), (run.optimizer, "optimizer"),
               (run.scheduler, "scheduler")]
    if run.stage_optimizer is not None:
        require_keys(state, ("stage_optimizer",), last_path)
        modules.append((run.stage_optimizer, "stage_optimizer"))
    for module, key in modules:
        load_state(module, state[key], last_path, key)
    restore_rng_state(state["rng"])
    main = [entry for entry in state["history"] if is_main_epoch(entry)]
    best_epoch = state.get("best_epoch") or (max(main, key=lambda e: e["test_top1"])["epoch"] if main else 0)
    log.info("resumed %s from %s after %d epochs", run.config.run_name, last_path, len(state["history"]))
    return Progress(state["history"], state["best_top1"], best_epoch, state.get("best_student"),
                    state["elapsed_s"], state.get("segments", []))


def train_one_epoch(run: Run, epoch: int, progress: bool) -> dict:
    """One pass over the training data: ``{"lr", "train_loss", "terms"}`` (means; global under DDP)."""
    _, _, objective_forward = run.forwards
    if hasattr(run.train_loader, "set_epoch"):
        run.train_loader.set_epoch(epoch)
    run.objective.set_progress(epoch, run.config.epochs)
    lr = run.optimizer.param_groups[0]["lr"]
    run.student.train()
    run.objective.train()
    if run.stage is not None:
        for module in run.stage.frozen_after:
            module.eval()
    desc = f"{run.config.run_name} epoch {epoch + 1}/{run.config.epochs}"
    sums = run_batches(run, run.optimizer, objective_forward, desc, progress)
    run.scheduler.step()
    values = epoch_means(run, *sums, f"epoch {epoch + 1}", lr)
    return {"lr": lr, "train_loss": values[0], "terms": dict(zip(sums[1], values[1:]))}


def train_stage_epoch(run: Run, stage_epoch: int, progress: bool) -> dict:
    """One pass of the initialisation stage: only the stage's modules train (in train mode, the
    rest in eval mode), on the stage's loss, with the stage's optimizer. Same keys as ``train_one_epoch``."""
    stage = run.stage
    if hasattr(run.train_loader, "set_epoch"):
        run.train_loader.set_epoch(run.config.epochs + stage_epoch)  # an order the main epochs never read
    lr = run.stage_optimizer.param_groups[0]["lr"]
    run.student.eval()
    run.objective.eval()
    for module in stage.modules:
        module.train()

    def stage_loss(student_out, teacher_out, labels, index):
        terms = stage.loss(student_out, teacher_out)
        return sum(terms.values()), {name: value.detach() for name, value in terms.items()}

    desc = f"{run.config.run_name} init epoch {stage_epoch + 1}/{run.stage_epochs}"
    sums = run_batches(run, run.stage_optimizer, stage_loss, desc, progress)
    values = epoch_means(run, *sums, f"initialisation-stage epoch {stage_epoch + 1}", lr)
    return {"lr": lr, "train_loss": values[0], "terms": dict(zip(sums[1], values[1:]))}


def run_batches(run: Run, optimizer: torch.optim.Optimizer, loss_of, desc: str, progress: bool):
    """One optimizer step per training batch on ``loss_of(student_out, teacher_out, y, index)`` ->
    (loss, detached terms); returns (loss sum, term sums, images seen), sums still on the device."""
    student_forward, teacher_forward, _ = run.forwards
    device = run.device
    loss_sum, term_sums, seen = torch.zeros((), device=device), {}, 0
    # iter() exactly once per epoch: given the loader itself, tqdm.auto's bar calls iter() on it
    # twice, which makes an EpochLoader skip to the next epoch's order (and start its workers twice)
    batches = tqdm(
        iter(run.train_loader),
        total=len(run.train_loader) if hasattr(run.train_loader, "__len__") else None,
        desc=desc, disable=not (progress and run.is_main), leave=False, unit="batch",
    )
    for batch in batches:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        index = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
        with autocast(device, run.settings.amp):
            teacher_out = None
            if teacher_forward is not None:
                with torch.no_grad():
                    teacher_out = float32_outputs(teacher_forward(x, with_features=True))
            student_out = float32_outputs(student_forward(x, with_features=True))
        loss, terms = loss_of(student_out, teacher_out, y, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = y.shape[0]
        loss_sum += loss.detach() * n
        for name, value in terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + value * n
        seen += n
    return loss_sum, term_sums, seen


def epoch_means(run: Run, loss_sum: Tensor, term_sums: dict, seen: int, what: str, lr: float) -> list[float]:
    """[mean loss, mean of each term] over the epoch's images (global under DDP), read in one host
    sync; ValueError for an empty epoch, FloatingPointError for a non-finite mean."""
    if seen == 0:
        raise ValueError("the training data yielded no batches; is the training set empty?")
    totals = torch.stack([loss_sum, *term_sums.values(), loss_sum.new_tensor(seen)])
    if run.distributed is not None:
        dist.all_reduce(totals)  # sums over the processes: the global batches' sums and count
    values = totals[:-1].div(totals[-1]).tolist()  # one host sync
    if not all(math.isfinite(v) for v in values):
        raise FloatingPointError(
            f"{run.config.run_name}: the training loss is not finite in {what}; lower the learning "
            f"rate (now {lr}) or the loss weights {run.config.weights}"
        )
    return values


def save_epoch(run: Run, state: Progress, last_path: Path, elapsed: float, run_info: dict) -> None:
    """Write ``last.pt`` (with the best epoch's weights), then ``best.pt`` derived from it."""
    last = {
        "config": run.config.to_dict(),
        "epoch": sum(map(is_main_epoch, state.history)),  # main epochs done
        "student": run.student.state_dict(),
        "objective": run.objective.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": capture_rng_state(),
        "history": state.history,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "best_student": state.best_student,
        "elapsed_s": elapsed,
        "teacher_fingerprint": fingerprint(run.teacher),
        "segments": state.segments,
        "run_info": run_info,
    }
    if run.stage_optimizer is not None:
        last["stage_optimizer"] = run.stage_optimizer.state_dict()
    save_checkpoint(last, last_path)
    if state.best_student is not None:  # none during an initialisation stage
        save_checkpoint(best_state(last), last_path.with_name("best.pt"))


def end_epoch(run: Run, state: Progress, epoch: int, trained: dict, started: float, stage: str | None = None) -> dict:
    """Evaluate on the test set and add the epoch to ``state`` (the best weights too, if it is the best).

    ``stage="init"``: an initialisation-stage epoch, marked so and never the best epoch.
    """
    test = evaluate_test_set(run.student, run.test_loader, run.distributed)
    entry = {
        **({"stage": stage} if stage is not None else {}),
        "epoch": epoch + 1,
        **trained,
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "epoch_time_s": time.perf_counter() - started,
        "load": load_average(),
    }
    state.history.append(entry)
    if stage is None and entry["test_top1"] > state.best_top1:  # the first of equal maxima stays the best
        state.best_top1, state.best_epoch = entry["test_top1"], epoch + 1
        state.best_student = {k: v.detach().clone() for k, v in run.student.state_dict().items()}
    return entry


def log_epoch(run: Run, entry: dict, progress: bool) -> None:
    if not run.is_main:
        return
    summary = f"loss {entry['train_loss']:.4f}  top1 {entry['test_top1']:.2f}  top5 {entry['test_top5']:.2f}"
    name, epochs = run.config.run_name, run.config.epochs
    if not is_main_epoch(entry):
        name, epochs = f"{name} {entry['stage']}", run.stage_epochs
    log.info("%s epoch %d/%d: %s  lr %.4g  %.1fs", name, entry["epoch"], epochs, summary, entry["lr"], entry["epoch_time_s"])
    if progress:
        tqdm.write(f"{name} epoch {entry['epoch']}/{epochs}: {summary}  ({entry['epoch_time_s']:.1f}s)")


def segment_info(run: Run, from_epoch: int, from_stage_epoch: int | None = None) -> dict:
    """Who trains this segment of the run: the (main) epoch it starts from, the code's commit, the
    device; for a run with an initialisation stage also the stage epoch it starts from."""
    info = provenance()
    stage = {} if from_stage_epoch is None else {"from_stage_epoch": from_stage_epoch}
    return {"from_epoch": from_epoch, **stage, "git_commit": info["git_commit"], "git_dirty": info["git_dirty"],
            "device": run_device_description(run), "created": info["created"]}


def run_device_description(run: Run) -> str:
    description = device_description(run.device)
    return description if run.distributed is None else f"{run.distributed.world_size} x {description}"


def make_record(run: Run, state: Progress, run_info: dict, wall_time: float, train_data, test_data,
                out_dir: Path | None, results_dir: str | Path | None, load_start: float | None = None) -> RunRecord:
    config = run.config
    main = [entry for entry in state.history if is_main_epoch(entry)]
    best = main[state.best_epoch - 1]
    last = main[-1]
    info = dict(run_info)
    if out_dir is None:
        checkpoint_dir = None
    else:
        checkpoint_dir = portable_path(out_dir, results_dir) if results_dir is not None else str(out_dir)
    return RunRecord(
        name=config.run_name, role=info.pop("role", "student"), method=config.method, student=config.student,
        teacher=config.teacher, seed=config.seed, config=config.to_dict(), history=state.history,
        best_top1=best["test_top1"], best_top5=best["test_top5"], best_epoch=best["epoch"],
        last_top1=last["test_top1"], last_top5=last["test_top5"], wall_time_s=wall_time,
        device=run_device_description(run),
        train_size=info.pop("train_size", num_examples(train_data)),
        test_size=info.pop("test_size", num_examples(test_data)),
        checkpoint_dir=checkpoint_dir, segments=state.segments, host=host_info(load_start), **info, **provenance(),
    )


def train(
    config: TrainConfig,
    student: nn.Module,
    train_data,
    test_data,
    teacher: nn.Module | None = None,
    *,
    out_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    run_info: dict | None = None,
    progress: bool = True,
    resume_from_last: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    distributed: DistributedContext | None = None,
) -> RunRecord:
    """Train ``student`` (distilling from ``teacher`` when the weights need one); return its ``RunRecord``.

    train_data / test_data: a ``Dataset`` of (x, y, index) or (x, y) items, or a loader yielding
        such batches (for example ``fast.GPUResidentLoader``, already on the device).
    out_dir:     folder for ``last.pt`` and ``best.pt``; with ``resume_from_last`` a ``last.pt`` there
                 is resumed (a different configuration is a ``CheckpointError``). None: no checkpoints.
    results_dir: where the JSON record goes (None: not written).
    run_info:    record fields the loop cannot know: ``role`` ("teacher"/"student"), ``profile``,
                 ``dataset``, ``train_size``, ``test_size``, ``teacher_checkpoint``, ``teacher_top1``, ``spec``.
    on_epoch_end: called with each epoch's metrics after its checkpoint is written (in every process).
    distributed: this process's place in a data-parallel job (``init_distributed()``; see the
                 module docstring). ``train_data`` is then an ``ImageDataset`` or this process's
                 ``GPUResidentLoader``; the device is the context's.
    """
    run_info = dict(run_info or {})
    unknown = set(run_info) - RUN_INFO_KEYS
    if unknown:
        raise TypeError(f"unknown run_info keys {sorted(unknown)}; valid keys: {sorted(RUN_INFO_KEYS)}")
    run = prepare_run(config, student, train_data, test_data, teacher, distributed)
    last_path = Path(out_dir) / "last.pt" if out_dir is not None else None
    if last_path is not None and run.is_main:
        remove_stale_temporaries(last_path.parent)
    state = Progress()
    if resume_from_last and last_path is not None and last_path.exists():
        state = resume(run, last_path)
    main_done = sum(map(is_main_epoch, state.history))
    stage_done = len(state.history) - main_done
    if main_done < config.epochs:
        state.segments.append(segment_info(run, main_done, stage_done if run.stage is not None else None))
    load_start = load_average()
    segment_start = time.perf_counter()

    def finish_epoch(entry: dict) -> None:
        if last_path is not None and run.is_main:
            save_epoch(run, state, last_path, state.elapsed_before + time.perf_counter() - segment_start, run_info)
        log_epoch(run, entry, progress)
        if on_epoch_end is not None:
            on_epoch_end(entry)

    for stage_epoch in range(stage_done, run.stage_epochs):
        started = time.perf_counter()
        finish_epoch(end_epoch(run, state, stage_epoch, train_stage_epoch(run, stage_epoch, progress), started, "init"))
    if run.stage is not None:
        for parameter in run.stage.frozen_parameters():
            parameter.requires_grad_(False)  # the main optimizer leaves them out; no gradients either
    for epoch in range(main_done, config.epochs):
        started = time.perf_counter()
        finish_epoch(end_epoch(run, state, epoch, train_one_epoch(run, epoch, progress), started))
    if last_path is not None and run.is_main:
        sync_best_checkpoint(last_path.parent)
    wall_time = state.elapsed_before + time.perf_counter() - segment_start
    record = make_record(run, state, run_info, wall_time, train_data, test_data,
                         None if out_dir is None else Path(out_dir), results_dir, load_start)
    if results_dir is not None and run.is_main:
        save_record(record, results_dir)
    if distributed is not None:
        dist.barrier()  # no process returns (and, say, loads best.pt) before rank 0 has written everything
    return record
