"""The one interface: registry names, the paper's weighted objective, and what the trainer needs to know."""
from __future__ import annotations

import math

import pytest
import torch

from icd_lib.config import METHOD_WEIGHTS, method_options
from icd_lib.losses import Distiller, Objective, available_methods, build_method
from icd_lib.outputs import ModelOutput, ModelShapes

STUDENT = ModelShapes(((4, 8, 8), (4, 8, 8), (8, 4, 4), (8, 2, 2)), pooled_dim=8, num_classes=5)
TEACHER = ModelShapes(((4, 8, 8), (8, 8, 8), (16, 4, 4), (16, 2, 2)), pooled_dim=16, num_classes=5)


def outputs(shapes: ModelShapes, seed: int, n: int = 6) -> ModelOutput:
    g = torch.Generator().manual_seed(seed)
    features = tuple(torch.randn(n, *s, generator=g).relu().requires_grad_() for s in shapes.feature_shapes)
    return ModelOutput(
        torch.randn(n, shapes.num_classes, generator=g).requires_grad_(),
        features,
        torch.randn(n, shapes.pooled_dim, generator=g).relu().requires_grad_(),
    )


LABELS = torch.tensor([0, 1, 2, 3, 4, 0])
INDEX = torch.tensor([3, 1, 4, 0, 5, 9])
LOGIT_TERMS = {"ce", "kd", "dkd", "wsld", "dist"}  # terms that only see the logits
EQUAL_WIDTH_TERMS = {"fsp"}  # compare student and teacher maps of equal channel counts: a teacher as wide as STUDENT


def test_registered_names_are_exactly_the_terms_of_the_recipes():
    terms = {name for weights in METHOD_WEIGHTS.values() for name in weights}
    assert set(available_methods()) == terms == {
        "ce", "kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "vid", "nst", "crd", "icd", "dkd", "wsld", "dist",
        "ab", "ft", "fsp",
    }


@pytest.mark.parametrize("recipe", sorted(METHOD_WEIGHTS))
def test_every_recipe_builds_and_sums_its_weighted_terms(recipe):
    weights = METHOD_WEIGHTS[recipe]
    teacher_shapes = STUDENT if set(weights) & EQUAL_WIDTH_TERMS else TEACHER
    torch.manual_seed(0)
    objective = Objective(weights, STUDENT, teacher_shapes, num_data=10, options=method_options(recipe))
    student, teacher = outputs(STUDENT, 1), outputs(teacher_shapes, 2)
    total, terms = objective(student, teacher, LABELS, INDEX)
    assert set(weights) <= set(terms)
    assert all(isinstance(objective.methods[name], Distiller) for name in weights)
    expected = sum(w * terms[name] for name, w in weights.items())
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert math.isfinite(total.item())
    total.backward()
    # every weighted term reaches the student: the feature terms through its pooled features or feature
    # maps (AB and FSP weigh 0 in the main epochs: their initialisation stage is the method)
    reached = [t.grad is not None and bool(t.grad.abs().sum() > 0) for t in (student.pooled, *student.features)]
    assert any(reached) == bool({name for name, w in weights.items() if w} - LOGIT_TERMS), reached
    assert bool(student.logits.grad.abs().sum() > 0)  # every recipe has cross-entropy
    assert all(not t.requires_grad for t in terms.values())  # logged terms are detached


def test_training_labels_reach_crd_and_every_other_method_ignores_them():
    train_labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    all_methods = {name: 1.0 for name in available_methods() if name not in EQUAL_WIDTH_TERMS}
    objective = Objective(all_methods, STUDENT, TEACHER, num_data=10, train_labels=train_labels)
    assert objective.methods["crd"].negative_sampling == "class-aware"
    torch.manual_seed(0)
    total, _ = objective(outputs(STUDENT, 1), outputs(TEACHER, 2), LABELS, INDEX)
    assert math.isfinite(total.item())
    assert Objective(all_methods, STUDENT, TEACHER, num_data=10).methods["crd"].negative_sampling == "instance-level"
    with pytest.raises(ValueError, match="9 labels but num_data is 10"):
        Objective(METHOD_WEIGHTS["crd"], STUDENT, TEACHER, num_data=10, train_labels=train_labels[:9])


def test_icd_plus_kd_against_hand_written_terms():
    """CE + 1 * KD + 1 * L_icd with CE and KD written out with plain ops."""
    torch.manual_seed(0)
    objective = Objective(METHOD_WEIGHTS["icd+kd"], STUDENT, TEACHER)
    student, teacher = outputs(STUDENT, 1), outputs(TEACHER, 2)
    total, terms = objective(student, teacher, LABELS)
    log_p = student.logits.log_softmax(1)
    ce = -log_p[torch.arange(6), LABELS].mean()
    p_t, log_p_s = (teacher.logits / 4).softmax(1), (student.logits / 4).log_softmax(1)
    kd = 16 * (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    icd = objective.methods["icd"].loss(student.pooled, teacher.pooled)
    assert total.item() == pytest.approx((ce + kd + icd).item(), rel=1e-5)


def test_needs_teacher_and_needs_index_follow_the_methods():
    assert not Objective(METHOD_WEIGHTS["student"], STUDENT).needs_teacher
    assert Objective(METHOD_WEIGHTS["icd"], STUDENT, TEACHER).needs_teacher
    assert not Objective(METHOD_WEIGHTS["icd"], STUDENT, TEACHER).needs_index
    assert Objective(METHOD_WEIGHTS["crd+kd"], STUDENT, TEACHER, num_data=10).needs_index
    plain = Objective(METHOD_WEIGHTS["student"], STUDENT)
    total, terms = plain(outputs(STUDENT, 1), None, LABELS)  # no teacher needed, none given
    assert set(terms) == {"ce"}
    with pytest.raises(ValueError, match="teacher"):
        Objective(METHOD_WEIGHTS["icd"], STUDENT, TEACHER)(outputs(STUDENT, 1), None, LABELS)
    with pytest.raises(ValueError, match="indices"):
        crd = Objective(METHOD_WEIGHTS["crd"], STUDENT, TEACHER, num_data=10)
        crd(outputs(STUDENT, 1), outputs(TEACHER, 2), LABELS)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'icdd'.*ce.*icd"):
        build_method("icdd", STUDENT, TEACHER)
    with pytest.raises(ValueError, match="unknown method"):
        Objective({"ce": 1.0, "mlkd": 1.0}, STUDENT, TEACHER)


def test_parameters_are_exposed_and_trained_by_one_optimizer():
    objective = Objective(METHOD_WEIGHTS["icd+kd"], STUDENT, TEACHER, options={"icd": {"alpha": 0.1}})
    assert objective.methods["icd"].loss.alpha == 0.1
    names = {name for name, _ in objective.named_parameters()}
    assert {"methods.icd.loss.tau", "methods.icd.loss.bias", "methods.icd.loss.embed_s.weight"} <= names
    assert Objective(METHOD_WEIGHTS["fitnet"], STUDENT, TEACHER).methods["fitnet"].regressor is not None
    assert sum(p.numel() for p in Objective(METHOD_WEIGHTS["kd"], STUDENT, TEACHER).parameters()) == 0

    tau_before = objective.methods["icd"].loss.tau.item()
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.5)
    total, _ = objective(outputs(STUDENT, 1), outputs(TEACHER, 2), LABELS)
    total.backward()
    optimizer.step()
    assert objective.methods["icd"].loss.tau.item() != tau_before


def test_state_dict_round_trip_keeps_crd_bank_and_icd_scale():
    source = Objective(METHOD_WEIGHTS["crd"], STUDENT, TEACHER, num_data=10)
    source(outputs(STUDENT, 1), outputs(TEACHER, 2), LABELS, INDEX)  # moves the bank and sets Z
    target = Objective(METHOD_WEIGHTS["crd"], STUDENT, TEACHER, num_data=10)
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target.methods["crd"].memory_s, source.methods["crd"].memory_s)
    assert target.methods["crd"].normaliser.min().item() > 0
