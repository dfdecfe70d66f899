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
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from icd_lib.outputs import ModelOutput, ModelShapes

_REGISTRY: dict[str, Callable[..., "Distiller"]] = {}


class Distiller(nn.Module):
    """Base class: maps (student, teacher, labels, index) to named loss terms."""

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True
    needs_index: ClassVar[bool] = False
    # True: built with ``train_labels=`` (the training set's labels, or None), e.g. CRD's negative sampling
    uses_train_labels: ClassVar[bool] = False

    @classmethod
    def accepted_options(cls) -> list[str]:
        """The keyword options the method takes (``icd.alpha`` on the command line names ``alpha``)."""
        standard = {"self", "student_shapes", "teacher_shapes", "num_data", "train_labels"}
        parameters = inspect.signature(cls.__init__).parameters.values()
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in parameters if p.kind in named and p.name not in standard]

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Called by the trainer before each epoch (``epoch`` counts from 0); methods with a
        schedule, such as DKD's warm-up, override it. The default does nothing."""

    def forward(
        self,
        student: ModelOutput,
        teacher: ModelOutput | None,
        labels: Tensor,
        index: Tensor | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError


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
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(available_methods())}") from None


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
