"""What one call of ``train`` works with, built once: device, loaders, objective, optimizers."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import Dataset

import icd_lib.losses  # noqa: F401  (registers the loss terms)
from icd_lib.losses.base import InitStage, Objective
from icd_lib.models import probe_shapes
from icd_lib.train.distributed import wrap_for_ddp
from icd_lib.train.fast import FastSettings, compile_model, prepare_models
from icd_lib.train.loaders import build_loaders, num_examples, training_labels
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig
from icd_lib.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What one call of ``train`` works with, built once by ``prepare_run``."""

    config: TrainConfig
    how: RunOptions
    device: torch.device
    fast: FastSettings
    model: nn.Module
    teacher: nn.Module | None
    objective: Objective
    forwards: tuple  # (model, teacher, objective) as each step calls them; see ``step_modules``
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: Iterable
    test_loader: Iterable
    stage: InitStage | None = None  # the objective's initialisation stage, if any
    stage_optimizer: torch.optim.Optimizer | None = None

    @property
    def distributed(self):
        return self.how.distributed

    @property
    def is_main(self) -> bool:
        return self.how.is_main

    @property
    def stage_epochs(self) -> int:
        """How many initialisation-stage epochs precede the main epochs (0 without a stage)."""
        return 0 if self.stage is None else self.stage.epochs(self.config.epochs)


def prepare_run(config: TrainConfig, model: nn.Module, train_data, test_data, teacher: nn.Module | None,
                how: RunOptions) -> Run:
    """Device and fast path (resolved once), loaders, the objective built from the models' shapes,
    the step modules, optimizers and schedule."""
    device = how.resolve_device()
    fast = how.fast_settings(device)
    for note in fast.notes:
        log.info(note)
    seed_everything(config.seed)
    train_loader, test_loader = build_loaders(train_data, test_data, config, how, device, fast)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    example = test_data[0][0] if isinstance(test_data, Dataset) else next(iter(test_loader))[0][0]
    objective = build_objective(config, model, teacher, train_data, example.shape).to(device)
    teacher = teacher if objective.needs_teacher else None
    stage = objective.init_stage(model)
    if stage is not None and how.distributed is not None:
        raise ValueError(
            f"the weights {config.weights} include a method with an initialisation stage, which the loop runs in "
            "a single process only; train this run without torchrun"
        )
    optimizer, stage_optimizer = build_optimizers(config, model, objective, stage)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.lr_decay_rate)
    forwards = step_modules(model, teacher, objective, fast, how)
    return Run(config, how, device, fast, model, teacher, objective, forwards, optimizer, scheduler,
               train_loader, test_loader, stage, stage_optimizer)


def build_objective(config: TrainConfig, model: nn.Module, teacher: nn.Module | None, train_data,
                    input_shape: tuple[int, ...]) -> Objective:
    """The paper's eq. 13 as ``config.weights``, its methods built for the models' shapes."""
    input_shape = tuple(input_shape)
    objective = Objective(
        config.weights, probe_shapes(model, input_shape),
        probe_shapes(teacher, input_shape) if teacher is not None else None,
        num_examples(train_data), config.method_options, train_labels=training_labels(train_data),
    )
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"the weights {config.weights} distil from a teacher: pass teacher=<a trained model>")
    return objective


def build_optimizers(config: TrainConfig, model: nn.Module, objective: Objective, stage: InitStage | None):
    """(main SGD optimizer over the model and the objective, the stage's optimizer or None).

    The main optimizer leaves out what the stage freezes afterwards; the stage's has its own
    learning rate (else the run's) and the run's momentum and weight decay.
    """
    frozen, stage_optimizer = set(), None
    if stage is not None:
        frozen = {id(p) for p in stage.frozen_parameters()}
        stage_optimizer = torch.optim.SGD(
            stage.parameters(), lr=config.lr if stage.lr is None else stage.lr,
            momentum=config.momentum, weight_decay=config.weight_decay,
        )
    optimizer = torch.optim.SGD(
        [p for p in [*model.parameters(), *objective.parameters()] if id(p) not in frozen],
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
    )
    return optimizer, stage_optimizer


def step_modules(model: nn.Module, teacher: nn.Module | None, objective: Objective, fast: FastSettings,
                 how: RunOptions):
    """(model_forward, teacher_forward, objective_forward): what each step calls.

    Single process: ``prepare_models`` and the objective itself. Data parallel: the model and
    the objective wrapped by ``wrap_for_ddp`` (methods that compare across the batch then see the
    global batch), compiled after wrapping when ``fast.compile``. Either way the optimizer and
    checkpoints use the original modules, which share their parameters with these.
    """
    if how.distributed is None:
        return (*prepare_models(model, teacher, fast), objective)
    _, teacher_forward = prepare_models(model, teacher, replace(fast, compile=False))
    model_forward, objective_forward = wrap_for_ddp(model, objective, how.distributed)
    if fast.compile:
        model_forward, teacher_forward = compile_model(model_forward, fast), compile_model(teacher_forward, fast)
    return model_forward, teacher_forward, objective_forward
