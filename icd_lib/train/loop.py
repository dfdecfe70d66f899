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
from icd_lib.losses.base import Objective
from icd_lib.models import probe_shapes
from icd_lib.results.records import RunRecord, portable_path, provenance, save_record
from icd_lib.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_same_config,
    load_checkpoint,
    load_state,
    restore_rng_state,
    save_checkpoint,
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
from icd_lib.utils import device_description, get_device, seed_everything

log = logging.getLogger(__name__)

# Models trained with lr 0.01 instead of 0.05 in the paper's recipe (FACTS.md section 2).
LOW_LR_MODELS = frozenset({"mobilenetv2", "shufflev1", "shufflev2"})
# Configuration fields that may change between a run and its resumption.
RESUMABLE_DIFFERENCES = frozenset({"device", "num_workers"})


def default_lr(model_name: str, base_lr: float = 0.05) -> float:
    """The paper's learning rate for training ``model_name``: 0.01 for MobileNetV2/ShuffleNets, else ``base_lr``."""
    return 0.01 if model_name.lower().replace("_", "") in LOW_LR_MODELS else base_lr


@dataclass
class TrainConfig:
    """Everything that decides a run. Defaults are the paper's CIFAR-100 recipe (FACTS.md section 2).

    ``weights`` default to ``METHOD_WEIGHTS[method]``; ``milestones`` default to the paper's
    150/180/210 of 240 scaled to ``epochs``. Both are filled in at construction, so the saved
    configuration says exactly what ran.

    Fast path (``icd_lib.train.fast``): ``amp`` (bf16 autocast), ``channels_last``: ``None``
    follows ``fast`` (the device's best choice when ``fast``, off otherwise); ``compile`` and
    ``cuda_graphs`` are off unless asked for. ``fast`` itself makes ``icd_lib.train.runs`` use
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


RUN_INFO_KEYS = frozenset({"role", "profile", "dataset", "train_size", "test_size", "teacher_checkpoint", "teacher_top1"})


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
    resume: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    distributed: DistributedContext | None = None,
) -> RunRecord:
    """Train ``student`` (distilling from ``teacher`` when the weights need one); return its ``RunRecord``.

    train_data / test_data: a ``Dataset`` of (x, y, index) or (x, y) items, or a loader yielding
        such batches (for example ``fast.GPUResidentLoader``, already on the device).
    out_dir:     folder for ``last.pt`` and ``best.pt``; with ``resume`` a ``last.pt`` there is
                 resumed (a different configuration is a ``CheckpointError``). None: no checkpoints.
    results_dir: where the JSON record goes (None: not written).
    run_info:    record fields the loop cannot know: ``role`` ("teacher"/"student"), ``profile``,
                 ``dataset``, ``train_size``, ``test_size``, ``teacher_checkpoint``, ``teacher_top1``.
    on_epoch_end: called with each epoch's metrics after its checkpoint is written (in every process).
    distributed: this process's place in a data-parallel job (``init_distributed()``; see the
                 module docstring). ``train_data`` is then an ``ImageDataset`` or this process's
                 ``GPUResidentLoader``; the device is the context's.
    """
    run_info = dict(run_info or {})
    unknown = set(run_info) - RUN_INFO_KEYS
    if unknown:
        raise TypeError(f"unknown run_info keys {sorted(unknown)}; valid keys: {sorted(RUN_INFO_KEYS)}")
    if distributed is None:
        device = get_device(config.device)
    elif config.device is not None and torch.device(config.device).type != distributed.device.type:
        raise ValueError(
            f"config.device={config.device!r}, but this data-parallel process runs on {distributed.device}; "
            "leave config.device None (each process uses the device init_distributed chose)"
        )
    else:
        device = distributed.device
    is_main = distributed is None or distributed.is_main
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
    student_shapes = probe_shapes(student, input_shape)
    teacher_shapes = probe_shapes(teacher, input_shape) if teacher is not None else None
    objective = Objective(
        config.weights, student_shapes, teacher_shapes, num_examples(train_data), config.method_options,
        train_labels=training_labels(train_data),
    ).to(device)
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"the weights {config.weights} distil from a teacher: pass teacher=<a trained model>")
    if not objective.needs_teacher:
        teacher = None
    student_forward, teacher_forward, objective_forward = step_modules(student, teacher, objective, settings, distributed)
    optimizer = torch.optim.SGD(
        [*student.parameters(), *objective.parameters()],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.lr_decay_rate)

    history: list[dict] = []
    best_top1, elapsed_before = -1.0, 0.0
    last_path = Path(out_dir) / "last.pt" if out_dir is not None else None
    if resume and last_path is not None and last_path.exists():
        state = load_checkpoint(last_path)
        check_same_config(state["config"], config.to_dict(), last_path, ignore=RESUMABLE_DIFFERENCES)
        if state["teacher_fingerprint"] != fingerprint(teacher):
            raise CheckpointError(
                f"checkpoint {last_path} was trained with a different teacher (weights differ); resume with "
                "the same teacher checkpoint, or choose another output folder to start a new run"
            )
        for module, key in ((student, "student"), (objective, "objective"), (optimizer, "optimizer"), (scheduler, "scheduler")):
            load_state(module, state[key], last_path, key)
        history, best_top1, elapsed_before = state["history"], state["best_top1"], state["elapsed_s"]
        restore_rng_state(state["rng"])
        log.info("resumed %s from %s after epoch %d", config.run_name, last_path, len(history))

    segment_start = time.perf_counter()
    for epoch in range(len(history), config.epochs):
        epoch_start = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, term_sums, seen = torch.zeros((), device=device), {}, 0
        student.train()
        objective.train()
        # iter() exactly once per epoch: given the loader itself, tqdm.auto's bar calls iter() on it
        # twice, which makes an EpochLoader skip to the next epoch's order (and start its workers twice)
        batches = tqdm(
            iter(train_loader),
            total=len(train_loader) if hasattr(train_loader, "__len__") else None,
            desc=f"{config.run_name} epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and is_main),
            leave=False,
            unit="batch",
        )
        for batch in batches:
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            index = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
            with autocast(device, settings.amp):
                teacher_out = None
                if teacher_forward is not None:
                    with torch.no_grad():
                        teacher_out = float32_outputs(teacher_forward(x, with_features=True))
                student_out = float32_outputs(student_forward(x, with_features=True))
            loss, terms = objective_forward(student_out, teacher_out, y, index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = y.shape[0]
            loss_sum += loss.detach() * n
            for name, value in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + value * n
            seen += n
        scheduler.step()
        if seen == 0:
            raise ValueError("the training data yielded no batches; is the training set empty?")
        totals = torch.stack([loss_sum, *term_sums.values(), loss_sum.new_tensor(seen)])
        if distributed is not None:
            dist.all_reduce(totals)  # sums over the processes: the global batches' sums and count
        train_values = totals[:-1].div(totals[-1]).tolist()  # one host sync
        if not all(math.isfinite(v) for v in train_values):
            raise FloatingPointError(
                f"{config.run_name}: the training loss is not finite in epoch {epoch + 1}; "
                f"lower the learning rate (now {lr}) or the loss weights {config.weights}"
            )
        test = evaluate_test_set(student, test_loader, distributed)
        entry = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_values[0],
            "terms": dict(zip(term_sums, train_values[1:])),
            "test_top1": test["top1"],
            "test_top5": test["top5"],
            "epoch_time_s": time.perf_counter() - epoch_start,
        }
        history.append(entry)
        is_best = entry["test_top1"] > best_top1
        best_top1 = max(best_top1, entry["test_top1"])
        if last_path is not None and is_main:
            state = {
                "config": config.to_dict(),
                "epoch": epoch + 1,
                "student": student.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng_state(),
                "history": history,
                "best_top1": best_top1,
                "elapsed_s": elapsed_before + time.perf_counter() - segment_start,
                "teacher_fingerprint": fingerprint(teacher),
            }
            save_checkpoint(state, last_path)
            if is_best:
                save_checkpoint(state, last_path.with_name("best.pt"))
        summary = f"loss {entry['train_loss']:.4f}  top1 {entry['test_top1']:.2f}  top5 {entry['test_top5']:.2f}"
        if is_main:
            log.info("%s epoch %d/%d: %s  lr %.4g  %.1fs", config.run_name, epoch + 1, config.epochs, summary, lr, entry["epoch_time_s"])
        if progress and is_main:
            tqdm.write(f"{config.run_name} epoch {epoch + 1}/{config.epochs}: {summary}  ({entry['epoch_time_s']:.1f}s)")
        if on_epoch_end is not None:
            on_epoch_end(entry)

    best = max(history, key=lambda e: e["test_top1"])  # first of equal maxima, as best.pt
    record = RunRecord(
        name=config.run_name,
        role=run_info.pop("role", "student"),
        method=config.method,
        student=config.student,
        teacher=config.teacher,
        seed=config.seed,
        config=config.to_dict(),
        history=history,
        best_top1=best["test_top1"],
        best_top5=best["test_top5"],
        best_epoch=best["epoch"],
        last_top1=history[-1]["test_top1"],
        last_top5=history[-1]["test_top5"],
        wall_time_s=elapsed_before + time.perf_counter() - segment_start,
        device=device_description(device) if distributed is None else f"{distributed.world_size} x {device_description(device)}",
        train_size=run_info.pop("train_size", num_examples(train_data)),
        test_size=run_info.pop("test_size", num_examples(test_data)),
        checkpoint_dir=None if out_dir is None else portable_path(out_dir, results_dir) if results_dir is not None else str(out_dir),
        **run_info,
        **provenance(),
    )
    if results_dir is not None and is_main:
        save_record(record, results_dir)
    if distributed is not None:
        dist.barrier()  # no process returns (and, say, loads best.pt) before rank 0 has written everything
    return record
