"""A run as a value: ``RunSpec`` says everything that decides a training run, and nothing else.

From a spec, in one place each: its name (stable, readable, unique; ``RunSpec.from_name`` reads
it back), its ``TrainConfig``, its teacher's spec, and the identity its record carries.

Names read left to right::

    book-icd+kd-resnet8-from-resnet20-seed1
    book-content_style-spurious-kd-resnet8-from-resnet20-seed0
    book-icd+kd-resnet8-from-resnet20-seed0-icd.alpha=0.1
    book-teacher-resnet20-seed0

profile, then the dataset (and style mode) where it is not the profile's, the recipe
(``teacher`` for a teacher run, ``student`` for the plain student), the trained model, its
teacher, the seed, then what differs from the defaults: ``e<epochs>``, ``n<training images>``
(``nall``), weight overrides (``kd=0.5``) and term options (``icd.alpha=0.1``), sorted.
"""
from __future__ import annotations

import math
import re
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from icd_lib.config import METHOD_WEIGHTS, Profile, default_lr, get_profile, method_options, method_weights
from icd_lib.data.content_style import STYLE_MODES
from icd_lib.data.info import DATASETS
from icd_lib.errors import InputError
from icd_lib.losses.base import available_methods, term_class
from icd_lib.models import MODEL_NAMES
from icd_lib.results.records import RecordError, RunRecord, load_record
from icd_lib.train.run_config import TrainConfig

TEACHER = "teacher"  # the recipe name of a teacher run: cross-entropy only, no teacher of its own
TEACHER_SEED = 0  # each (profile, dataset, architecture) has one teacher, shared by all students
Value = float | int | bool
MAX_SEED = 2**32 - 1  # NumPy takes seeds up to here
# A run name is a file name (results/<name>.json, checkpoints/<name>/, and a temporary
# .<name>.json.XXXXXXXX.tmp while a record is written): these characters only, at most this long.
SAFE_NAME = re.compile(r"[A-Za-z0-9_+=][A-Za-z0-9_.+=-]*")
MAX_NAME_LENGTH = 200
INTEGER = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
ACCEPTED_FORMS = {bool: "true or false", int: "a whole number such as 4096",
                  float: "a finite number such as 0.5, 2 or 1e-05"}


class SpecError(InputError):
    """A run specification that cannot be trained: the message says what to change."""


def format_value(value: Value) -> str:
    """The canonical text of an option or weight value, as names and the command line write it:
    ``format(value, "g")`` where that reads back exactly and has no ``-`` (names are split at
    ``-``), else the shortest decimal that reads back (1e-05 -> ``0.00001``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = abs(value) if value == 0 else value  # -0.0 is 0: a "-" would split the name
        text = format(value, "g")
        if "-" in text or float(text) != value:
            text = np.format_float_positional(value, trim="-")
        return text
    return str(value)


def parse_value(key: str, text: str, kind: type) -> Value:
    """``text`` read as a ``kind`` (bool, int or float) for ``key``; ``SpecError`` naming the accepted form otherwise."""
    if len(text) <= MAX_NAME_LENGTH:
        if kind is bool and text in ("true", "false"):
            return text == "true"
        if kind is int and INTEGER.fullmatch(text):
            return int(text)
        if kind is float and DECIMAL.fullmatch(text) and math.isfinite(float(text)):
            return float(text)
    shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
    raise SpecError(f"{key}={shown!r} is not a valid value: {key} takes {ACCEPTED_FORMS[kind]}")


def option_type(key: str) -> type:
    """The declared type (bool, int or float) of the term option ``key`` ("kd.temperature")."""
    term, _, option = key.partition(".")
    if term not in available_methods():
        raise SpecError(f"option {key} names no loss term {term!r}; loss terms: {', '.join(available_methods())}")
    declared = term_class(term).option_types()
    if option not in declared:
        raise SpecError(f"term {term!r} has no option {option!r}; its options: {', '.join(declared) or 'none'}")
    kinds = [t for t in typing.get_args(declared[option]) or (declared[option],) if t is not type(None)]
    if kinds not in ([bool], [int], [float]):
        raise SpecError(f"option {key} is neither a number nor true/false, so it cannot be set by --set or a run name")
    return kinds[0]


def parse_assignments(items: list[str] | tuple[str, ...]) -> tuple[dict[str, float], dict[str, Value]]:
    """``["kd=0.5", "icd.alpha=0.1"]`` -> (weights ``{"kd": 0.5}``, options ``{"icd.alpha": 0.1}``).

    A key without a dot is a loss weight (a float), ``term.option`` an option of that term, read
    as the type the term declares for it (``option_type``).
    """
    weights, options = {}, {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise SpecError(f"expected KEY=VALUE (a weight such as kd=0.5 or an option such as icd.alpha=0.1), got {item!r}")
        if "." in key:
            options[key] = parse_value(key, text, option_type(key))
        else:
            weights[key] = parse_value(key, text, float)
    return weights, options


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run. Build specs with :func:`make_spec` (it fills the defaults in).

    ``weights`` and ``options`` are overrides of the recipe's, as sorted (key, value) pairs
    (``(("kd", 0.5),)``, ``(("icd.alpha", 0.1),)``); ``train_size`` None means the whole training set.
    """

    profile: str
    method: str
    model: str  # the trained network's architecture (the teacher's in a teacher run)
    teacher: str | None
    seed: int
    dataset: str
    style_mode: str | None
    epochs: int
    train_size: int | None
    weights: tuple[tuple[str, float], ...] = ()
    options: tuple[tuple[str, Value], ...] = ()

    @property
    def is_teacher(self) -> bool:
        return self.method == TEACHER

    @property
    def profile_settings(self) -> Profile:
        return get_profile(self.profile)

    @property
    def name(self) -> str:
        profile = self.profile_settings
        parts = [self.profile]
        if self.dataset != profile.dataset:
            parts.append(self.dataset)
        if self.style_mode not in (None, "random"):
            parts.append(self.style_mode)
        parts += [self.method, self.model]
        if self.teacher is not None:
            parts += ["from", self.teacher]
        parts.append(f"seed{self.seed}")
        if self.epochs != default_epochs(profile, self.is_teacher):
            parts.append(f"e{self.epochs}")
        if self.train_size != default_train_size(profile, self.is_teacher):
            parts.append("nall" if self.train_size is None else f"n{self.train_size}")
        parts += [f"{k}={format_value(v)}" for k, v in (*self.weights, *self.options)]
        return "-".join(parts)

    @classmethod
    def from_name(cls, name: str) -> "RunSpec":
        """The spec whose ``name`` is ``name`` (``SpecError`` when it is not a run name)."""
        return parse_name(name)

    def term_weights(self) -> dict[str, float]:
        """The loss weights of the run: the recipe's, with ``weights`` applied."""
        return {"ce": 1.0} if self.is_teacher else method_weights(self.method, **dict(self.weights))

    def term_options(self) -> dict[str, dict]:
        """Options of each loss term: the recipe's, with ``options`` applied."""
        merged = {} if self.is_teacher else method_options(self.method)
        for key, value in self.options:
            term, _, option = key.partition(".")
            merged.setdefault(term, {})[option] = value
        return merged

    def teacher_spec(self) -> "RunSpec | None":
        """The spec of the run that trains this run's teacher (None for teachers and plain students).

        The teacher learns the same dataset under random style, for the profile's teacher epochs
        on the profile's teacher training set, with seed ``TEACHER_SEED``.
        """
        if self.teacher is None:
            return None
        return make_spec(self.profile, TEACHER, model=self.teacher, seed=TEACHER_SEED, dataset=self.dataset,
                         style_mode=None if self.style_mode is None else "random")

    def train_config(self) -> TrainConfig:
        """The ``TrainConfig`` of this run: its objective and the profile's optimiser recipe."""
        profile = self.profile_settings
        return TrainConfig(
            method="student" if self.is_teacher else self.method,
            weights=self.term_weights(),
            method_options=self.term_options(),
            model=self.model,
            teacher=self.teacher,
            epochs=self.epochs,
            batch_size=profile.batch_size,
            lr=default_lr(self.model, profile.lr),
            momentum=profile.momentum,
            weight_decay=profile.weight_decay,
            milestones=profile.milestones(self.epochs),
            lr_decay_rate=profile.lr_decay_rate,
            seed=self.seed,
            run_name=self.name,
        )

    def identity(self) -> dict:
        """The fields that define the experiment, JSON-ready (what records carry as ``spec``)."""
        data = asdict(self)
        data["weights"], data["options"] = dict(self.weights), dict(self.options)
        return data

    @classmethod
    def from_identity(cls, data: dict) -> "RunSpec":
        values = dict(data)
        values["weights"] = tuple(sorted(values.get("weights", {}).items()))
        values["options"] = tuple(sorted(values.get("options", {}).items()))
        return cls(**values)

    def with_seed(self, seed: int) -> "RunSpec":
        return replace(self, seed=seed)


def default_epochs(profile: Profile, teacher: bool) -> int:
    return profile.teacher_epochs if teacher else profile.student_epochs


def default_train_size(profile: Profile, teacher: bool) -> int | None:
    return profile.teacher_train_size if teacher else profile.student_train_size


def make_spec(profile: str, method: str, **fields) -> RunSpec:
    """A checked ``RunSpec``; what is not given is the profile's (teacher/student models, epochs, sizes).

    ``method``: a recipe of ``icd_lib.config.METHOD_WEIGHTS`` or ``"teacher"``. ``fields``: any of
    ``RunSpec``'s others, ``weights`` and ``options`` as dicts (``weights={"kd": 0.5}``). ``teacher``
    defaults to the profile's teacher for a distillation recipe and None otherwise; ``style_mode``
    is for content_style only (default "random"). Raises ``SpecError`` on anything that could not
    train: unknown names, weights of terms the recipe lacks, options a term does not take.
    """
    unknown = sorted(set(fields) - set(SPEC_FIELDS))
    if unknown:
        raise SpecError(f"unknown spec fields {unknown}; valid: {', '.join(SPEC_FIELDS)}")
    settings = get_profile(profile)
    is_teacher = method == TEACHER
    if not is_teacher and method not in METHOD_WEIGHTS:
        raise SpecError(f"unknown method {method!r}; valid methods: {', '.join(METHOD_WEIGHTS)}, or 'teacher'")
    dataset, style_mode = data_of(settings, fields.get("dataset"), fields.get("style_mode"))
    model = fields.get("model") or (settings.teacher if is_teacher else settings.student)
    teacher = fields.get("teacher") if "teacher" in fields else (
        None if is_teacher or method == "student" else settings.teacher)
    for name in (model, teacher):
        if name is not None and name not in MODEL_NAMES:
            raise SpecError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    spec = RunSpec(
        profile=settings.name, method=method, model=model, teacher=teacher, seed=fields.get("seed", 0),
        dataset=dataset, style_mode=style_mode, epochs=fields.get("epochs") or default_epochs(settings, is_teacher),
        train_size=fields["train_size"] if "train_size" in fields else default_train_size(settings, is_teacher),
        weights=tuple(sorted((fields.get("weights") or {}).items())),
        options=tuple(sorted((fields.get("options") or {}).items())),
    )
    check_spec(spec)
    return spec


SPEC_FIELDS = ("model", "teacher", "seed", "dataset", "style_mode", "epochs", "train_size", "weights", "options")


def data_of(settings: Profile, dataset: str | None, style_mode: str | None) -> tuple[str, str | None]:
    """(dataset, style mode) of a run: the profile's dataset by default; a style mode for
    content/style data only (default "random")."""
    dataset = dataset or settings.dataset
    if dataset not in DATASETS:
        raise SpecError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    if dataset == "content_style":
        style_mode = style_mode or "random"
        if style_mode not in STYLE_MODES:
            raise SpecError(f"unknown style mode {style_mode!r}; valid: {', '.join(STYLE_MODES)}")
    elif style_mode is not None:
        raise SpecError(f"style_mode applies to the content_style dataset only, not {dataset!r}")
    return dataset, style_mode


def check_spec(spec: RunSpec) -> None:
    """``SpecError`` unless ``spec`` can train (see ``make_spec``)."""
    if not isinstance(spec.seed, int) or isinstance(spec.seed, bool) or not 0 <= spec.seed <= MAX_SEED:
        raise SpecError(f"seed must be a non-negative integer up to {MAX_SEED}, got {spec.seed!r}")
    if not isinstance(spec.epochs, int) or spec.epochs < 1:
        raise SpecError(f"epochs must be a positive integer, got {spec.epochs!r}")
    if spec.train_size is not None and (not isinstance(spec.train_size, int) or spec.train_size < 1):
        raise SpecError(f"train_size must be a positive integer or None (all), got {spec.train_size!r}")
    if spec.is_teacher and (spec.weights or spec.options or spec.teacher is not None):
        raise SpecError("a teacher run trains with cross-entropy alone: it takes no teacher, weights or options")
    recipe = {} if spec.is_teacher else METHOD_WEIGHTS[spec.method]
    for term, value in spec.weights:
        if term not in recipe:
            raise SpecError(f"weight {term}={value} is not a term of recipe {spec.method!r}; its terms: {', '.join(recipe)}")
        if not is_number(value, float) or not value >= 0:
            raise SpecError(f"weight {term}={value} must be >= 0 and finite")
    for key, value in spec.options:
        check_option(spec.method, recipe, key, value)
    needs_teacher = any(term != "ce" for term in spec.term_weights())
    if needs_teacher and spec.teacher is None:
        raise SpecError(f"recipe {spec.method!r} distils from a teacher: give a teacher model")
    if not needs_teacher and spec.teacher is not None:
        raise SpecError(f"recipe {spec.method!r} uses no teacher, but teacher={spec.teacher!r} was given")
    check_name(spec.name)


def check_name(name: str) -> None:
    """``SpecError`` unless ``name`` is a safe file name (``SAFE_NAME``, at most ``MAX_NAME_LENGTH``)."""
    if not SAFE_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise SpecError(f"the run name {name[:80]!r} ({len(name)} characters) is not a safe file name of at most "
                        f"{MAX_NAME_LENGTH} characters from [A-Za-z0-9_.+=-]; choose shorter or plainer values")


def is_number(value, kind: type) -> bool:
    """Whether ``value`` is a finite ``kind`` (int, or float, which takes ints too); bools are not numbers."""
    accepted = (int,) if kind is int else (int, float)
    return isinstance(value, accepted) and not isinstance(value, bool) and math.isfinite(value)


def check_option(method: str, recipe: dict, key: str, value: Value) -> None:
    """``SpecError`` unless ``key`` ("term.option") names an option of a term of ``recipe`` and ``value`` is of its type."""
    term = key.partition(".")[0]
    if term not in recipe:
        raise SpecError(f"option {key} is for term {term!r}, which recipe {method!r} lacks; its terms: {', '.join(recipe)}")
    kind = option_type(key)
    if not (isinstance(value, bool) if kind is bool else is_number(value, kind)):
        raise SpecError(f"option {key}={value!r} is not valid: {key} takes {ACCEPTED_FORMS[kind]}")
    if kind is not bool and value < 0:
        raise SpecError(f"option {key}={value} must be >= 0")


def parse_name(name: str) -> RunSpec:
    """Read a run name back into its spec (the grammar is in the module docstring)."""
    tokens = name.split("-")

    def fail(why: str) -> SpecError:
        return SpecError(f"{name!r} is not a run name ({why}); see icd_lib.experiments.spec")

    try:
        profile = tokens.pop(0)
        get_profile(profile)
        dataset = tokens.pop(0) if tokens[0] in DATASETS else None
        style_mode = tokens.pop(0) if dataset == "content_style" and tokens[0] in STYLE_MODES else None
        method, model = tokens.pop(0), tokens.pop(0)
        teacher = None
        if tokens[0] == "from":
            tokens.pop(0)
            teacher = tokens.pop(0)
        seed_token = tokens.pop(0)
    except IndexError:
        raise fail("too few parts") from None
    except ValueError as err:
        raise fail(str(err)) from None
    if not seed_token.startswith("seed") or not seed_token[4:].isdigit():
        raise fail(f"expected seed<N>, got {seed_token!r}")
    extra: dict = {}
    weights, options = parse_assignments([t for t in tokens if "=" in t])
    for token in (t for t in tokens if "=" not in t):
        if token == "nall":
            extra["train_size"] = None
        elif token[:1] in "en" and token[1:].isdigit():
            extra["epochs" if token[0] == "e" else "train_size"] = int(token[1:])
        else:
            raise fail(f"unexpected part {token!r}")
    return make_spec(profile, method, model=model, teacher=teacher, seed=int(seed_token[4:]), dataset=dataset,
                     style_mode=style_mode, weights=weights, options=options, **extra)


def load_run_record(path: str | Path) -> RunRecord:
    """The record at ``path`` (``load_record``), checked to be the run its name says (``check_record``)."""
    return check_record(load_record(path), Path(path))


def check_record(record: RunRecord, path: Path) -> RunRecord:
    """``record``, read from ``path``, if the spec it carries is that of the run its name says; a
    ``RecordError`` otherwise (a record copied to another run's file name, or edited into another
    run). A record without a spec, or whose name is no run name (made by calling ``train``
    directly), is taken as it is."""
    if record.spec is None:
        return record
    try:
        named = RunSpec.from_name(record.name)
    except SpecError:
        return record
    if RunSpec.from_identity(record.spec) != named:
        raise RecordError(f"{path} is not a valid run record (its spec is that of run "
                          f"{RunSpec.from_identity(record.spec).name}, not of {record.name}); delete it and rerun the run")
    return record
