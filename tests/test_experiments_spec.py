"""Run specifications: names that say what ran and read back, plans without duplicates, and
clear errors before anything trains."""
from __future__ import annotations

import inspect
import itertools

import pytest

from icd_lib.config import get_profile, method_options, method_weights
from icd_lib.experiments.plans import MATCHED_SEEDS, PAPER_METHODS, PAPER_PAIRS_CROSS, PAPER_PAIRS_SAME, PLANS, get_plan, plan_specs
from icd_lib.experiments.spec import RunSpec, SpecError, make_spec, parse_assignments
from icd_lib.losses.icd import ICDLoss


@pytest.mark.parametrize("spec, name", [
    (make_spec("book", "teacher"), "book-teacher-resnet20-seed0"),
    (make_spec("book", "student", seed=1), "book-student-resnet8-seed1"),
    (make_spec("book", "icd+kd", seed=2), "book-icd+kd-resnet8-from-resnet20-seed2"),
    (make_spec("book", "kd", dataset="content_style", style_mode="spurious"),
     "book-content_style-spurious-kd-resnet8-from-resnet20-seed0"),
    (make_spec("book", "kd", dataset="content_style"), "book-content_style-kd-resnet8-from-resnet20-seed0"),
    (make_spec("book", "icd+kd", options={"icd.alpha": 0.1}, weights={"kd": 0.5}),
     "book-icd+kd-resnet8-from-resnet20-seed0-kd=0.5-icd.alpha=0.1"),
    (make_spec("book", "kd", epochs=3, train_size=None), "book-kd-resnet8-from-resnet20-seed0-e3-nall"),
    (make_spec("book", "kd", epochs=8, train_size=10_000), "book-kd-resnet8-from-resnet20-seed0"),  # the defaults
    (make_spec("paper", "crd", model="shufflev1", teacher="resnet32x4"),
     "paper-crd-shufflev1-from-resnet32x4-seed0"),
])
def test_names_say_what_ran_and_read_back(spec, name):
    assert spec.name == name
    assert RunSpec.from_name(name) == spec


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_every_spec_of_every_plan_round_trips_and_names_are_unique(plan):
    specs = plan_specs(get_plan(plan))
    assert len({s.name for s in specs}) == len(specs) == len(set(specs))
    for spec in specs:
        assert RunSpec.from_name(spec.name) == spec
        assert RunSpec.from_identity(spec.identity()) == spec


def test_teachers_come_before_the_runs_that_need_them():
    specs = plan_specs(get_plan("book"))
    position = {s.name: i for i, s in enumerate(specs)}
    for spec in specs:
        if spec.teacher is not None:
            assert position[spec.teacher_spec().name] < position[spec.name]
    teachers = [s.name for s in specs if s.is_teacher]
    assert teachers == ["book-teacher-resnet20-seed0", "book-content_style-teacher-resnet20-seed0"]


def test_the_book_plan_holds_what_the_chapters_read():
    groups = {g.name: g for g in get_plan("book")}
    assert list(groups) == ["comparison-a", "ablations", "invariance", "causal", "comparison-b", "matched-weights"]
    methods_a = {s.method for s in groups["comparison-a"].specs}
    assert {"student", "kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "vid", "nst", "crd", "crd+kd", "icd",
            "icd+kd", "ab", "ft", "fsp", "dkd", "kd+ls", "dkd+ls", "wsld", "dist"} <= methods_a
    assert all(len({s.seed for s in g.specs}) == 3 for name, g in groups.items()
               if name not in ("causal", "matched-weights"))
    assert {s.seed for s in groups["matched-weights"].specs} == set(MATCHED_SEEDS)
    crd_negatives = {dict(s.options).get("crd.num_negatives") for s in groups["comparison-a"].specs if s.method == "crd"}
    assert crd_negatives == {None, 4096}  # the default K, and K/N near CIFAR-100's 16384 / 50000
    crd_weights = {dict(s.weights).get("crd") for s in groups["comparison-a"].specs if s.method == "crd"}
    assert crd_weights == {None, 0.1} and 0.1 < method_weights("crd")["crd"]
    for comparison, recipe in itertools.product(("comparison-a", "comparison-b"), ("dkd", "dkd+ls")):
        warmups = {dict(s.options).get("dkd.warmup_fraction") for s in groups[comparison].specs
                   if s.method == recipe}
        assert warmups == {None, 0.5}  # the reference ramp (20 of 240 epochs), and half the epochs
    assert 4096 < get_profile("book").student_train_size - 1  # the cap K = min(K, N - 1) leaves it as set
    alphas = {dict(s.options).get("icd.alpha") for s in groups["ablations"].specs} - {None}
    assert alphas == {0.0, 0.1, 1.0, 2.0, 5.0}  # 0.5 is the comparison's icd+kd run
    scales = {dict(s.options).get("icd.max_scale") for s in groups["ablations"].specs} - {None}
    assert scales == {100.0} and 100.0 > inspect.signature(ICDLoss).parameters["max_scale"].default
    invariance = groups["invariance"].specs
    assert {s.style_mode for s in invariance} == {"spurious"}
    assert {s.teacher_spec().style_mode for s in invariance if s.teacher} == {"random"}
    assert {s.model for s in groups["comparison-b"].specs} == {"mobilenetv2"}


@pytest.mark.parametrize("name, pairs", [("table-1", PAPER_PAIRS_SAME), ("table-2", PAPER_PAIRS_CROSS)])
def test_the_paper_tables_list_each_run_once_and_every_plain_student(name, pairs):
    group = {g.name: g for g in get_plan("paper")}[name]
    names = [s.name for s in group.specs]
    assert len(names) == len(set(names))
    seeds = get_profile("paper").seeds
    plain = [s for s in group.specs if s.method == "student"]
    assert {(s.model, s.seed) for s in plain} == {(student, seed) for _, student in pairs for seed in seeds}
    assert all(s.teacher is None for s in plain)
    students = [student for _, student in pairs]
    shared = len(students) - len(set(students))  # table 1: resnet20; table 2: mobilenetv2, shufflev1
    assert shared == {"table-1": 1, "table-2": 2}[name]
    assert len(names) == (len(pairs) * len(PAPER_METHODS) - shared) * len(seeds)
    pair_methods = [(s.teacher, s.model, s.method) for s in group.specs if s.seed == seeds[0]]
    first_pair = [(pairs[0][0], pairs[0][1], m) if m != "student" else (None, pairs[0][1], m) for m in PAPER_METHODS]
    assert pair_methods[:len(PAPER_METHODS)] == first_pair  # pair by pair, in the recipes' order

def test_train_config_is_the_recipe_with_the_overrides():
    spec = make_spec("book", "icd+kd", weights={"kd": 0.5}, options={"icd.alpha": 0.1}, seed=3)
    config = spec.train_config()
    assert config.weights == {**method_weights("icd+kd"), "kd": 0.5}
    assert config.method_options == {"icd": {"alpha": 0.1}}
    assert (config.seed, config.epochs, config.run_name, config.lr) == (3, 8, spec.name, 0.05)
    assert make_spec("book", "kd", model="mobilenetv2").train_config().lr == 0.01  # the recipe's rate for MobileNetV2
    ls = make_spec("book", "kd+ls")
    assert ls.train_config().method_options == method_options("kd+ls")
    teacher = make_spec("book", "teacher").train_config()
    assert teacher.weights == {"ce": 1.0} and teacher.epochs == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "magic"}, "unknown method 'magic'; valid methods: student, kd"),
    ({"method": "kd", "options": {"kd.alpha": 1.0}}, "term 'kd' has no option 'alpha'; its options: temperature"),
    ({"method": "icd+kd", "options": {"icd.alpha": -0.5}}, "icd.alpha=-0.5 must be >= 0"),
    ({"method": "kd", "weights": {"crd": 1.0}}, "weight crd=1.0 is not a term of recipe 'kd'; its terms: ce, kd"),
    ({"method": "kd", "options": {"icd.alpha": 1.0}}, "option icd.alpha is for term 'icd', which recipe 'kd' lacks"),
    ({"method": "kd", "weights": {"kd": -1.0}}, "weight kd=-1.0 must be >= 0"),
    ({"method": "kd", "model": "resnet9"}, "unknown model 'resnet9'"),
    ({"method": "kd", "dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"method": "kd", "style_mode": "spurious"}, "style_mode applies to the content_style dataset only"),
    ({"method": "student", "teacher": "resnet20"}, "recipe 'student' uses no teacher"),
    ({"method": "kd", "teacher": None}, "recipe 'kd' distils from a teacher"),
    ({"method": "kd", "seed": -1}, "seed must be a non-negative integer"),
    ({"method": "teacher", "weights": {"ce": 2.0}}, "a teacher run trains with cross-entropy alone"),
])
def test_bad_specs_are_refused_before_anything_trains(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("+", r"\+")):
        make_spec("book", **kwargs)


def test_assignments_split_weights_from_options():
    assert parse_assignments(["kd=0.5", "icd.alpha=0.1", "kd.standardize=true"]) == (
        {"kd": 0.5}, {"icd.alpha": 0.1, "kd.standardize": True})
    for bad in ("kd", "=1", "kd=", "kd=fast"):
        with pytest.raises(SpecError):
            parse_assignments([bad])


@pytest.mark.parametrize("assignment, value", [
    ("kd.standardize=false", False), ("kd.standardize=true", True),
    ("kd.temperature=2", 2.0), ("kd.temperature=0.5", 0.5), ("kd.temperature=1e-05", 1e-05),
    ("crd.num_negatives=4096", 4096), ("ft.init_lr=0.1", 0.1), ("fitnet.hint_layer=2", 2),
])
def test_an_option_is_read_as_the_type_its_term_declares(assignment, value):
    key = assignment.partition("=")[0]
    (read,) = parse_assignments([assignment])[1].values()
    assert read == value and type(read) is type(value), key


@pytest.mark.parametrize("weights, name", [
    ({"kd": 1e-05}, "book-kd-resnet8-from-resnet20-seed0-kd=0.00001"),
    ({"kd": 2.5e-07}, "book-kd-resnet8-from-resnet20-seed0-kd=0.00000025"),
    ({"kd": 0.1234567}, "book-kd-resnet8-from-resnet20-seed0-kd=0.1234567"),  # "g" would round to 0.123457
    ({"kd": 1e20}, "book-kd-resnet8-from-resnet20-seed0-kd=1e+20"),
    ({"kd": 0.5, "ce": 1.0}, "book-kd-resnet8-from-resnet20-seed0-ce=1-kd=0.5"),
    ({"kd": -0.0}, "book-kd-resnet8-from-resnet20-seed0-kd=0"),
])
def test_any_finite_weight_has_a_name_that_reads_back_exactly(weights, name):
    spec = make_spec("book", "kd", weights=weights)
    assert spec.name == name
    assert RunSpec.from_name(name) == spec and dict(RunSpec.from_name(name).weights) == weights
    text = name.rpartition("kd=")[2]
    assert parse_assignments([f"kd={text}"])[0]["kd"] == weights["kd"]  # the command line reads the name's text


@pytest.mark.parametrize("kwargs, message", [
    ({"options": {"kd.standardize": "no"}}, "kd.standardize='no' is not valid: kd.standardize takes true or false"),
    ({"options": {"kd.temperature": True}}, "kd.temperature=True is not valid"),
    ({"options": {"kd.temperature": float("inf")}}, "kd.temperature=inf is not valid"),
    ({"weights": {"kd": float("nan")}}, "weight kd=nan must be >= 0 and finite"),
    ({"weights": {"kd": float("inf")}}, "weight kd=inf must be >= 0 and finite"),
    ({"seed": 2**32}, "seed must be a non-negative integer up to 4294967295"),
    ({"weights": {"kd": 1e-300}}, "is not a safe file name of at most 200 characters"),
])
def test_values_that_would_fail_late_are_refused_by_the_spec(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("+", r"\+")):
        make_spec("book", "kd", **kwargs)


def test_crd_options_are_checked_by_their_declared_types():
    with pytest.raises(SpecError, match="crd.num_negatives=1.5 is not valid: crd.num_negatives takes a whole number"):
        make_spec("book", "crd", options={"crd.num_negatives": 1.5})


@pytest.mark.parametrize("name", ["book-kd-resnet8", "book-kd-resnet8-from-resnet20-s0", "nope-kd-resnet8-seed0",
                                  "book-kd-resnet8-from-resnet20-seed0-x5"])
def test_a_name_that_is_not_a_run_name_is_a_clear_error(name):
    with pytest.raises(SpecError, match="is not a run name"):
        RunSpec.from_name(name)


def test_names_of_random_weights_and_options_read_back_exactly():
    import numpy as np

    rng = np.random.default_rng(0)
    for value in 10.0 ** rng.uniform(-12, 12, 300) * rng.uniform(0, 1, 300):
        spec = make_spec("book", "kd", weights={"kd": float(value)}, options={"kd.temperature": float(value) + 1.0})
        assert RunSpec.from_name(spec.name) == spec and dict(RunSpec.from_name(spec.name).weights)["kd"] == value
