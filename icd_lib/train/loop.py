"""The one training loop, for teachers and students alike.

The trained network is ``model``; a teacher run is a run with weights ``{"ce": 1}`` and no
teacher. Each step: teacher(x) under ``no_grad`` in eval mode -> model(x) (the student's outputs
that the losses see) -> ``Objective`` (the paper's eq. 13 as weights) -> backward -> one SGD step
over the model's and the objective's parameters (heads,
learned scales). Metrics accumulate on the device and are read once per epoch. After every epoch
the loop evaluates on the test set, writes ``last.pt`` (and ``best.pt`` when top-1 improved), and
a later call with the same configuration and output folder resumes from ``last.pt`` and ends
with exactly the metrics of an uninterrupted run (on the CPU). Building the run is
``icd_lib.train.prepare``'s job, saving and resuming ``icd_lib.train.resume``'s, the record
``icd_lib.train.recording``'s.

Data parallelism (``train(..., how=RunOptions(distributed=init_distributed()))`` in every
process torchrun starts; ``icd_lib.train.distributed``): each process trains on its share of
every global batch of ``config.batch_size`` images, read from a ``GPUResidentLoader`` (on the CPU
too: it is the one loader that shards batches). DDP averages the gradients, methods that compare
images across the batch see the global batch, and the epoch's loss sums are added over the
processes, so the history is the global batch's. Rank 0 alone evaluates on the test set, with
the weights and BatchNorm statistics it checkpoints (DDP keeps the weights equal everywhere;
each process updates its own running statistics from its own batches), and sends the accuracy
to the others, so every process returns the same record; rank 0 alone writes checkpoints, the
record, progress bars and per-epoch logs.

Initialisation stages (``icd_lib.losses.base.InitStage``, declared by methods that train some
parts alone first): before the main epochs, the loop runs ``stage.epochs(config.epochs)`` stage
epochs that train only the stage's modules (the rest in eval mode) on the stage's loss, with an
SGD optimizer of their own (the stage's learning rate, else the run's; the run's momentum and
weight decay) and no learning-rate schedule. Stage epoch s reads the training data in the order
of loader epoch ``config.epochs + s``, one the main epochs never use, so main epoch e sees the
same images in the same order as in a run without a stage. Stage epochs are evaluated, logged
and checkpointed like main epochs (a killed stage resumes exactly); their history entries carry
``"stage": "init"`` and their own ``epoch`` count from 1. ``epochs``, the best and the last epoch
of the record and ``last.pt``'s ``epoch`` count main epochs only. Afterwards the stage's
``frozen_after`` modules are left out of the main optimizer and kept in eval mode without
gradients. The loop never names a method: it asks the objective for its stage. Stages are
single-process only.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from icd_lib.errors import UserError
from icd_lib.eval.metrics import accuracy
from icd_lib.results.records import RunRecord, save_record
from icd_lib.train.checkpoint import is_main_epoch, remove_stale_temporaries, sync_best_checkpoint
from icd_lib.train.fast import autocast, float32_outputs
from icd_lib.train.options import RunOptions
from icd_lib.train.prepare import Run, prepare_run
from icd_lib.train.recording import check_run_info, make_record, segment_info
from icd_lib.train.resume import Progress, resume, save_epoch
from icd_lib.train.run_config import TrainConfig
from icd_lib.utils import load_average

log = logging.getLogger(__name__)


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss became infinite or NaN; the message names the learning rate and weights."""


def test_accuracy(run: Run) -> dict[str, float]:
    """{"top1", "top5"} in percent; under data parallelism measured by rank 0 and sent to every process."""
    if run.distributed is None:
        return accuracy(run.model, run.test_loader, topk=(1, 5))
    result = [accuracy(run.model, run.test_loader, topk=(1, 5)) if run.is_main else None]
    dist.broadcast_object_list(result, src=0)
    return result[0]


def train_one_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training data: ``{"lr", "train_loss", "terms"}`` (means; global under DDP)."""
    _, _, objective_forward = run.forwards
    if hasattr(run.train_loader, "set_epoch"):
        run.train_loader.set_epoch(epoch)
    run.objective.set_progress(epoch, run.config.epochs)
    lr = run.optimizer.param_groups[0]["lr"]
    run.model.train()
    run.objective.train()
    if run.stage is not None:
        for module in run.stage.frozen_after:
            module.eval()
    desc = f"{run.config.run_name} epoch {epoch + 1}/{run.config.epochs}"
    sums = run_batches(run, run.optimizer, objective_forward, desc)
    run.scheduler.step()
    values = epoch_means(run, *sums, f"epoch {epoch + 1}", lr)
    return {"lr": lr, "train_loss": values[0], "terms": dict(zip(sums[1], values[1:]))}


def train_stage_epoch(run: Run, stage_epoch: int) -> dict:
    """One pass of the initialisation stage: only the stage's modules train (in train mode, the
    rest in eval mode), on the stage's loss, with the stage's optimizer. Same keys as ``train_one_epoch``."""
    stage = run.stage
    if hasattr(run.train_loader, "set_epoch"):
        run.train_loader.set_epoch(run.config.epochs + stage_epoch)  # an order the main epochs never read
    lr = run.stage_optimizer.param_groups[0]["lr"]
    run.model.eval()
    run.objective.eval()
    for module in stage.modules:
        module.train()

    def stage_loss(student_out, teacher_out, labels, index):
        terms = stage.loss(student_out, teacher_out)
        return sum(terms.values()), {name: value.detach() for name, value in terms.items()}

    desc = f"{run.config.run_name} init epoch {stage_epoch + 1}/{run.stage_epochs}"
    sums = run_batches(run, run.stage_optimizer, stage_loss, desc)
    values = epoch_means(run, *sums, f"initialisation-stage epoch {stage_epoch + 1}", lr)
    return {"lr": lr, "train_loss": values[0], "terms": dict(zip(sums[1], values[1:]))}


def run_batches(run: Run, optimizer: torch.optim.Optimizer, loss_of, desc: str):
    """One optimizer step per training batch on ``loss_of(student_out, teacher_out, y, index)`` ->
    (loss, detached terms); returns (loss sum, term sums, images seen), sums still on the device."""
    model_forward, teacher_forward, _ = run.forwards
    device = run.device
    loss_sum, term_sums, seen = torch.zeros((), device=device), {}, 0
    # iter() exactly once per epoch: given the loader itself, tqdm.auto's bar calls iter() on it
    # twice, which makes an EpochLoader skip to the next epoch's order (and start its workers twice)
    batches = tqdm(
        iter(run.train_loader),
        total=len(run.train_loader) if hasattr(run.train_loader, "__len__") else None,
        desc=desc, disable=not (run.how.progress and run.is_main), leave=False, unit="batch",
    )
    for batch in batches:
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        index = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
        with autocast(device, run.fast.amp):
            teacher_out = None
            if teacher_forward is not None:
                with torch.no_grad():
                    teacher_out = float32_outputs(teacher_forward(x, with_features=True))
            student_out = float32_outputs(model_forward(x, with_features=True))
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
        raise TrainingDiverged(
            f"{run.config.run_name}: the training loss is not finite in {what}; lower the learning "
            f"rate (now {lr}) or the loss weights {run.config.weights}"
        )
    return values


def end_epoch(run: Run, state: Progress, epoch: int, trained: dict, started: float, stage: str | None = None) -> dict:
    """Evaluate on the test set and add the epoch to ``state`` (the best weights too, if it is the best).

    ``stage="init"``: an initialisation-stage epoch, marked so and never the best epoch.
    """
    test = test_accuracy(run)
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
        state.best_model = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return entry


def log_epoch(run: Run, entry: dict) -> None:
    if not run.is_main:
        return
    summary = f"loss {entry['train_loss']:.4f}  top1 {entry['test_top1']:.2f}  top5 {entry['test_top5']:.2f}"
    name, epochs = run.config.run_name, run.config.epochs
    if not is_main_epoch(entry):
        name, epochs = f"{name} {entry['stage']}", run.stage_epochs
    log.info("%s epoch %d/%d: %s  lr %.4g  %.1fs", name, entry["epoch"], epochs, summary, entry["lr"], entry["epoch_time_s"])
    if run.how.progress:
        tqdm.write(f"{name} epoch {entry['epoch']}/{epochs}: {summary}  ({entry['epoch_time_s']:.1f}s)")


def train(
    config: TrainConfig,
    model: nn.Module,
    train_data,
    test_data,
    teacher: nn.Module | None = None,
    how: RunOptions = RunOptions(),
    run_info: dict | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> RunRecord:
    """Train ``model`` (distilling from ``teacher`` when the weights need one); return its ``RunRecord``.

    train_data / test_data: a ``Dataset`` of (x, y, index) or (x, y) items, or a loader yielding
        such batches (for example ``fast.GPUResidentLoader``, already on the device).
    how:         how to run (``RunOptions``): with ``how.out``, ``last.pt`` and ``best.pt`` go to
                 ``out/checkpoints/<run name>/`` (a ``last.pt`` there is resumed; a different
                 configuration is a ``CheckpointError``) and the record to ``out/results/``.
                 Under ``how.distributed`` ``train_data`` is an ``ImageDataset`` or this process's
                 ``GPUResidentLoader``, and the device is the process's.
    run_info:    record fields the loop cannot know: ``role`` ("teacher"/"student"), ``profile``,
                 ``dataset``, ``train_size``, ``test_size``, ``teacher_checkpoint``, ``teacher_top1``, ``spec``.
    on_epoch_end: called with each epoch's metrics after its checkpoint is written (in every process).
    """
    run_info = check_run_info(run_info)
    run = prepare_run(config, model, train_data, test_data, teacher, how)
    last_path = None if how.out is None else how.checkpoint_dir(config.run_name) / "last.pt"
    state = start_segment(run, last_path)
    segment_start, load_start = time.perf_counter(), load_average()

    def finish_epoch(entry: dict) -> None:
        if last_path is not None and run.is_main:
            save_epoch(run, state, last_path, state.elapsed_before + time.perf_counter() - segment_start, run_info)
        log_epoch(run, entry)
        if on_epoch_end is not None:
            on_epoch_end(entry)

    train_epochs(run, state, finish_epoch)
    if last_path is not None and run.is_main:
        sync_best_checkpoint(last_path.parent)
    wall_time = state.elapsed_before + time.perf_counter() - segment_start
    record = make_record(run, state, run_info, wall_time, (train_data, test_data), load_start)
    if how.out is not None and run.is_main:
        save_record(record, how.results_dir())
    if run.distributed is not None:
        dist.barrier()  # no process returns (and, say, loads best.pt) before rank 0 has written everything
    return record


def start_segment(run: Run, last_path) -> Progress:
    """Progress so far (resumed from ``last_path`` when it exists), with a new segment added when
    epochs remain."""
    if last_path is not None and run.is_main:
        remove_stale_temporaries(last_path.parent)
    state = resume(run, last_path) if last_path is not None and last_path.exists() else Progress()
    main_done = state.main_epochs_done
    if main_done < run.config.epochs:
        stage_done = len(state.history) - main_done
        state.segments.append(segment_info(run, main_done, stage_done if run.stage is not None else None))
    return state


def train_epochs(run: Run, state: Progress, finish_epoch: Callable[[dict], None]) -> None:
    """The epochs still to train: the initialisation stage's, then the main ones, under a bar
    over the run's epochs (its time left is the run's; each epoch has a bar over its batches)."""
    main_done = state.main_epochs_done
    bar = tqdm(total=run.stage_epochs + run.config.epochs, initial=len(state.history), desc=run.config.run_name,
               unit="epoch", disable=not (run.how.progress and run.is_main), leave=False)
    with bar:
        for stage_epoch in range(len(state.history) - main_done, run.stage_epochs):
            started = time.perf_counter()
            trained = train_stage_epoch(run, stage_epoch)
            finish_epoch(end_epoch(run, state, stage_epoch, trained, started, "init"))
            bar.update()
        if run.stage is not None:
            for parameter in run.stage.frozen_parameters():
                parameter.requires_grad_(False)  # the main optimizer leaves them out; no gradients either
        for epoch in range(main_done, run.config.epochs):
            started = time.perf_counter()
            finish_epoch(end_epoch(run, state, epoch, train_one_epoch(run, epoch), started))
            bar.update()
