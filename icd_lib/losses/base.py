"""The one interface every distillation method implements, the registry, and the objective.

A method is an ``nn.Module`` built once for a teacher/student pair from their ``ModelShapes``.
Called on the student's and teacher's ``ModelOutput`` (and the labels, and the dataset indices
for methods with a memory bank), it returns named loss terms. The key equal to the method's
name is the term that enters the objective; keys of the form ``"<name>.<part>"`` are detached
diagnostics for logging (for example ``"icd.contrast"``). Trainable parts (projection heads,
regressors, ``tau``) are ordinary submodules/parameters, so ``objective.parameters()`` gives
the optimizer everything it must train besides the student.

The objective is configuration: ``Objective({"ce": 1, "kd": 1, "icd": 1}, ...)`` is the
paper's eq. 13 with lambda = beta = 1.

Initialisation stages. Some methods (AB, FT, FSP in RepDistiller) first train a few parts alone,
with a loss of their own, before the main training starts. Such a method returns an ``InitStage``
from ``init_stage(student)``: the modules the stage trains, its loss, how long it lasts (a
fraction of the main schedule), its learning rate and the modules that stay frozen afterwards.
``Objective.init_stage`` gathers the stages of its methods into one; the trainer runs it
(``icd_lib.train.loop``) without ever knowing which method asked for it.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from icd_lib.errors import InputError
from icd_lib.outputs import ModelOutput, ModelShapes

_REGISTRY: dict[str, Callable[..., "Distiller"]] = {}

StageLoss = Callable[[ModelOutput, "ModelOutput | None"], dict[str, Tensor]]
BatchGather = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, int]]


@dataclass(frozen=True)
class InitStage:
    """An initialisation stage: epochs that run before the main training, with their own optimizer.

    modules:      what the stage trains. During the stage these are in train mode and everything
                  else (the student, the objective) in eval mode, so only these modules' parameters
                  and BatchNorm statistics change. RepDistiller's ``init()`` does the same.
    loss:         (student outputs, teacher outputs) -> named terms, summed into the stage's loss
                  (``{"ft.init": ...}``); the teacher's outputs are computed without gradients.
    fraction:     its length as a fraction of the main schedule: ``epochs(main)`` is
                  ``max(1, round(fraction * main))`` (RepDistiller: 30 init epochs for 240, 1/8).
    lr:           its SGD learning rate; None: the run's (momentum and weight decay are the run's).
    frozen_after: modules that no longer train once the stage is over (FT's paraphraser): the
                  main optimizer leaves them out, and they stay in eval mode with gradients off.
    """

    modules: tuple[nn.Module, ...]
    loss: StageLoss
    fraction: float = 1 / 8
    lr: float | None = None
    frozen_after: tuple[nn.Module, ...] = ()

    def __post_init__(self):
        if not self.modules:
            raise ValueError("an InitStage needs at least one module to train")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"an InitStage lasts a fraction in (0, 1] of the main schedule, got {self.fraction}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"an InitStage's learning rate must be positive (or None: the run's), got {self.lr}")

    def epochs(self, main_epochs: int) -> int:
        """How many epochs the stage lasts before ``main_epochs`` main epochs: at least 1."""
        return max(1, round(self.fraction * main_epochs))

    def parameters(self) -> list[nn.Parameter]:
        """The parameters the stage trains, each once, in module order."""
        return unique_parameters(self.modules)

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The parameters the main training leaves alone."""
        return unique_parameters(self.frozen_after)


def unique_parameters(modules) -> list[nn.Parameter]:
    """The parameters of ``modules``, each once (by identity), in order."""
    seen, result = set(), []
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                result.append(parameter)
    return result


def feature_modules(name: str, student: nn.Module) -> tuple[nn.Module, ...]:
    """The student's layers up to its classifier: every child module except ``classifier``
    (RepDistiller's ``get_feat_modules()``), which AB's and FSP's stages train."""
    children = [(child_name, child) for child_name, child in student.named_children() if child_name != "classifier"]
    if len(children) == len(list(student.children())):
        raise ValueError(
            f"{name}: the student {type(student).__name__} has no 'classifier' submodule, so its feature layers "
            "cannot be told apart; use a model of icd_lib.models (a FeatureModel)"
        )
    return tuple(child for _, child in children)


class Distiller(nn.Module):
    """Base class: maps (student, teacher, labels, index) to named loss terms."""

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True
    needs_index: ClassVar[bool] = False
    # True: built with ``train_labels=`` (the training set's labels, or None), e.g. CRD's negative sampling
    uses_train_labels: ClassVar[bool] = False

    @classmethod
    def option_types(cls) -> dict[str, object]:
        """The keyword options the method takes, with their declared types (``{"temperature": float}``;
        ``icd.alpha`` on the command line names ``alpha``)."""
        return declared_options(cls.__init__, {"self", "student_shapes", "teacher_shapes", "num_data", "train_labels"})

    @classmethod
    def accepted_options(cls) -> list[str]:
        """The names of the keyword options the method takes."""
        return list(cls.option_types())

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Called by the trainer before each epoch (``epoch`` counts from 0); methods with a
        schedule, such as DKD's warm-up, override it. The default does nothing."""

    def init_stage(self, student: nn.Module) -> InitStage | None:
        """The initialisation stage the method trains before the main epochs, for ``student``
        (the model being trained); None (the default): the method has none."""
        return None

    def share_batch(self, gather: BatchGather) -> bool:
        """Called once in a data-parallel job: ``gather(a, b)`` returns ``a`` and ``b`` (n, ...) of
        every process, concatenated in rank order, and the offset of this process's rows. A method
        whose loss compares each image with the rest of the batch (ICD's negatives) keeps it to see
        the global batch and returns True; the default ignores it and returns False."""
        return False

    def forward(
        self,
        student: ModelOutput,
        teacher: ModelOutput | None,
        labels: Tensor,
        index: Tensor | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError


def declared_options(function: Callable, standard: set[str]) -> dict[str, object]:
    """The named parameters of ``function`` not in ``standard``, with their annotated types."""
    hints = typing.get_type_hints(function)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(function).parameters.values()
    return {p.name: hints.get(p.name) for p in parameters if p.kind in named and p.name not in standard}


def register(name: str):
    """Class decorator: make a ``Distiller`` buildable by ``build_method(name, ...)``.

    The class is constructed as ``cls(student_shapes, teacher_shapes, num_data=..., **options)``
    and must accept (and may ignore) those arguments; a class with ``uses_train_labels = True``
    also gets ``train_labels=...``.
    """

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_methods() -> list[str]:
    """Names of all registered loss terms (``ce``, ``kd``, ``icd``, ...)."""
    return sorted(_REGISTRY)


def term_class(name: str) -> type:
    """The class registered as loss term ``name`` (ValueError naming the valid ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown method {name!r}; valid methods: {', '.join(available_methods())}") from None


def build_method(
    name: str,
    student_shapes: ModelShapes,
    teacher_shapes: ModelShapes | None,
    num_data: int | None = None,
    train_labels: Tensor | None = None,
    **options,
) -> Distiller:
    """Build the loss term ``name`` for a teacher/student pair.

    ``num_data`` is the training set's size and ``train_labels`` its (num_data,) class labels in
    dataset-index order; methods that do not use them ignore them.
    """
    cls = term_class(name)
    if getattr(cls, "uses_train_labels", False):
        options["train_labels"] = train_labels
    return cls(student_shapes, teacher_shapes, num_data=num_data, **options)


class Objective(nn.Module):
    """sum_k weights[k] * term_k: the paper's eq. 13 (CE + lambda KD + beta L_icd) as configuration.

    ``options`` maps a method name to its keyword options (``{"icd": {"alpha": 0.1}}``).
    ``num_data`` and ``train_labels`` describe the training set (see ``build_method``).
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        student_shapes: ModelShapes,
        teacher_shapes: ModelShapes | None = None,
        num_data: int | None = None,
        options: Mapping[str, Mapping] | None = None,
        train_labels: Tensor | None = None,
    ):
        super().__init__()
        if not weights:
            raise ValueError("weights is empty: give at least one loss term, e.g. {'ce': 1.0}")
        options = dict(options or {})
        unknown = set(options) - set(weights)
        if unknown:
            raise ValueError(f"options given for methods not in weights: {sorted(unknown)}")
        self.weights = {name: float(w) for name, w in weights.items()}
        self.methods = nn.ModuleDict(
            {
                name: build_method(
                    name, student_shapes, teacher_shapes, num_data=num_data, train_labels=train_labels,
                    **options.get(name, {}),
                )
                for name in self.weights
            }
        )

    @property
    def needs_teacher(self) -> bool:
        return any(m.needs_teacher for m in self.methods.values())

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Tell every method where training stands: epoch ``epoch`` (from 0) of ``total_epochs``."""
        if not 0 <= epoch < total_epochs:
            raise ValueError(f"epoch must lie in [0, {total_epochs}), got {epoch}")
        for method in self.methods.values():
            method.set_progress(epoch, total_epochs)

    @property
    def needs_index(self) -> bool:
        return any(m.needs_index for m in self.methods.values())

    def share_batch(self, gather: BatchGather) -> list[str]:
        """Offer ``gather`` (see ``Distiller.share_batch``) to every method; the names of those that use it."""
        return [name for name, method in self.methods.items() if method.share_batch(gather)]

    def init_stage(self, student: nn.Module) -> InitStage | None:
        """The initialisation stages of the methods, as one: None when no method has one.

        Several stages run together (their modules train at once, their losses add up), so they
        must agree on their length and learning rate (a ValueError otherwise).
        """
        stages = {name: stage for name, method in self.methods.items()
                  if (stage := method.init_stage(student)) is not None}
        if len(stages) <= 1:
            return next(iter(stages.values()), None)
        settings = {name: (stage.fraction, stage.lr) for name, stage in stages.items()}
        if len(set(settings.values())) > 1:
            raise ValueError(
                f"the initialisation stages of {sorted(stages)} run together but differ in (fraction, lr): {settings}; "
                "give them the same init options"
            )

        def loss(student_out: ModelOutput, teacher_out: ModelOutput | None) -> dict[str, Tensor]:
            terms: dict[str, Tensor] = {}
            for stage in stages.values():
                terms.update(stage.loss(student_out, teacher_out))
            return terms

        first = next(iter(stages.values()))
        return InitStage(
            modules=tuple(m for stage in stages.values() for m in stage.modules), loss=loss,
            fraction=first.fraction, lr=first.lr,
            frozen_after=tuple(m for stage in stages.values() for m in stage.frozen_after),
        )

    def forward(
        self,
        student: ModelOutput,
        teacher: ModelOutput | None,
        labels: Tensor,
        index: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns (total loss, all named terms, unweighted and detached)."""
        if self.needs_teacher and teacher is None:
            raise ValueError(f"methods {list(self.methods)} need the teacher's outputs, got None")
        if self.needs_index and index is None:
            raise ValueError("a method with a memory bank (CRD) needs the dataset indices of the batch")
        total = torch.zeros((), device=student.logits.device, dtype=student.logits.dtype)
        logged: dict[str, Tensor] = {}
        for name, method in self.methods.items():
            terms = method(student, teacher, labels, index)
            total = total + self.weights[name] * terms[name]
            logged.update({k: v.detach() for k, v in terms.items()})
        return total, logged
