"""The logit methods DKD, logit standardisation (KD+LS, DKD+LS), WSLD and DIST: values worked out by
hand, the identities and invariances the papers state, the warm-up, gradients and input checks."""
from __future__ import annotations

import math

import pytest
import torch

from icd_lib.config import METHOD_OPTIONS, METHOD_WEIGHTS, method_options
from icd_lib.losses import Objective, build_method
from icd_lib.losses.ls import standardize
from icd_lib.outputs import ModelOutput, ModelShapes

LOGIT_METHODS = ("dkd", "wsld", "dist")


def out(logits) -> ModelOutput:
    logits = torch.as_tensor(logits, dtype=torch.float64)
    return ModelOutput(logits, (), torch.zeros(logits.shape[0], 1, dtype=torch.float64))


def shapes(k: int) -> ModelShapes:
    return ModelShapes(((1, 1, 1),), 1, k)


def build(name: str, k: int, **options):
    return build_method(name, shapes(k), shapes(k), **options)


def value(name, student, teacher, labels, **options) -> float:
    student, teacher = torch.as_tensor(student, dtype=torch.float64), torch.as_tensor(teacher, dtype=torch.float64)
    method = build(name, student.shape[1], **options)
    return method(out(student), out(teacher), torch.as_tensor(labels))[name].item()


def random_case(n=5, k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    t = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, k, (n,), generator=g)
    return s, t, y


def kl(p, q) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


# ---------------------------------------------------------------------------------- DKD


def test_dkd_known_value_with_mdistiller_defaults():
    # teacher at T = 4: softmax = (4, 1, 3) / 8, label 0; student uniform (1/3 each)
    teacher = [[4 * math.log(4.0), 0.0, 4 * math.log(3.0)]]
    student = [[0.0, 0.0, 0.0]]
    tckd = kl([1 / 2, 1 / 2], [1 / 3, 2 / 3])  # (p_t, 1 - p_t) of teacher vs student
    nckd = kl([1 / 4, 3 / 4], [1 / 2, 1 / 2])  # non-target classes renormalised: (1, 3) / 4 vs (1, 1) / 2
    method = build("dkd", 3)
    assert (method.alpha, method.beta, method.temperature) == (1.0, 8.0, 4.0)
    terms = method(out(student), out(teacher), torch.tensor([0]))
    assert terms["dkd"].item() == pytest.approx(16 * (1.0 * tckd + 8.0 * nckd), rel=1e-12)
    assert terms["dkd.tckd"].item() == pytest.approx(16 * tckd, rel=1e-12)
    assert terms["dkd.nckd"].item() == pytest.approx(16 * nckd, rel=1e-12)
    assert terms["dkd.warmup"].item() == 1.0
    # the same pair with the label on class 2: target prob 3/8 vs 1/3; the rest (4, 1)/5 vs (1, 1)/2
    expected = 2.0 * kl([3 / 8, 5 / 8], [1 / 3, 2 / 3]) + 0.5 * kl([4 / 5, 1 / 5], [1 / 2, 1 / 2])
    assert value("dkd", student, [[math.log(4.0), 0.0, math.log(3.0)]], [2], alpha=2.0, beta=0.5, temperature=1.0) \
        == pytest.approx(expected, rel=1e-12)


def test_kd_is_tckd_plus_one_minus_p_target_times_nckd_per_sample():
    """The paper's decomposition KD = TCKD + (1 - p_t^T) NCKD, sample by sample, from DKD's diagnostics."""
    s, t, y = random_case()
    kd, dkd = build("kd", 6), build("dkd", 6)
    for i in range(len(y)):
        terms = dkd(out(s[i : i + 1]), out(t[i : i + 1]), y[i : i + 1])
        p_target = torch.softmax(t[i] / 4, 0)[y[i]].item()
        kd_i = kd(out(s[i : i + 1]), out(t[i : i + 1]), y[i : i + 1])["kd"].item()
        assert kd_i == pytest.approx(terms["dkd.tckd"].item() + (1 - p_target) * terms["dkd.nckd"].item(), rel=1e-10)


def test_dkd_with_alpha_beta_one_is_kd_plus_the_teacher_confidence_weighted_nckd():
    """DKD drops the (1 - p_t) factor: DKD(alpha = beta = 1) - KD = mean_i p_t,i NCKD_i >= 0, not 0."""
    s, t, y = random_case()
    dkd = build("dkd", 6, alpha=1.0, beta=1.0)
    gap = dkd(out(s), out(t), y)["dkd"].item() - build("kd", 6)(out(s), out(t), y)["kd"].item()
    p_target = torch.softmax(t / 4, 1)[torch.arange(len(y)), y]
    nckd_i = torch.tensor([dkd(out(s[i : i + 1]), out(t[i : i + 1]), y[i : i + 1])["dkd.nckd"].item() for i in range(5)],
                          dtype=torch.float64)
    assert gap == pytest.approx((p_target * nckd_i).mean().item(), rel=1e-10)
    assert gap > 1e-3


def test_dkd_is_zero_when_the_student_matches_the_teacher():
    s, _, y = random_case()
    terms = build("dkd", 6)(out(s), out(s.clone()), y)
    assert abs(terms["dkd"].item()) < 1e-12


def test_dkd_warmup_follows_set_progress():
    s, t, y = random_case()
    method = build("dkd", 6)
    full = method(out(s), out(t), y)["dkd"].item()  # no progress set: factor 1
    # mdistiller: min(epoch / 20, 1) with epochs 1..240; here epochs count from 0
    for epoch, total, factor in [(0, 240, 1 / 20), (9, 240, 0.5), (18, 240, 19 / 20), (19, 240, 1.0),
                                 (239, 240, 1.0), (0, 24, 0.5), (1, 24, 1.0), (0, 1, 1.0),
                                 (0, 12, 1.0), (0, 8, 1.0), (0, 13, 12 / 13)]:  # < 12 epochs: none
        method.set_progress(epoch, total)
        assert method.warmup_factor() == pytest.approx(factor, rel=1e-12)
        terms = method(out(s), out(t), y)
        assert terms["dkd.warmup"].item() == pytest.approx(factor, rel=1e-12)
        assert terms["dkd"].item() == pytest.approx(factor * full, rel=1e-12)
    longer = build("dkd", 6, warmup_fraction=0.5)  # the book's 8-epoch check: 4 epochs of ramp
    for epoch, factor in [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0), (7, 1.0)]:
        longer.set_progress(epoch, 8)
        assert longer.warmup_factor() == pytest.approx(factor, rel=1e-12)
    no_warmup = build("dkd", 6, warmup_fraction=0.0)
    no_warmup.set_progress(0, 240)
    assert no_warmup.warmup_factor() == 1.0
    with pytest.raises(ValueError, match="dkd: epoch must lie in"):
        method.set_progress(240, 240)
    with pytest.raises(ValueError, match="warmup_fraction"):
        build("dkd", 6, warmup_fraction=1.5)


def test_objective_set_progress_reaches_dkd():
    objective = Objective(METHOD_WEIGHTS["dkd"], shapes(6), shapes(6), options=method_options("dkd"))
    objective.set_progress(4, 240)
    assert objective.methods["dkd"].warmup_factor() == pytest.approx(5 / 20)


# ---------------------------------------------------------------------- logit standardisation


def test_standardize_known_value_uses_the_sample_std():
    z = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 16.0]], dtype=torch.float64)
    # row 1: mean 2, sample std 1; row 2: mean 12, deviations (-2, -2, 4), sample std sqrt(24 / 2)
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2 / math.sqrt(12), -2 / math.sqrt(12), 4 / math.sqrt(12)]],
                            dtype=torch.float64)
    torch.testing.assert_close(standardize(z), expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        standardize(torch.zeros(3, 1))


def test_kd_with_standardisation_known_value():
    # z-scores: student (-1, 0, 1), teacher (1, 0, -1); base temperature 2
    p_s = torch.softmax(torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64), 0).tolist()
    p_t = torch.softmax(torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64), 0).tolist()
    got = value("kd", [[1.0, 2.0, 3.0]], [[7.0, 5.0, 3.0]], [0], temperature=2.0, standardize=True)
    assert got == pytest.approx(4 * kl(p_t, p_s), rel=1e-6)


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_standardisation_makes_the_loss_invariant_to_shift_and_scale_of_either_model(name):
    s, t, y = random_case()
    method = build(name, 6, standardize=True, temperature=2.0)
    base = method(out(s), out(t), y)[name].item()
    for s2, t2 in [(s + 5.0, t), (s, t - 3.0), (3.0 * s, t), (s, 0.2 * t), (0.5 * s - 1.0, 7.0 * t + 2.0)]:
        assert method(out(s2), out(t2), y)[name].item() == pytest.approx(base, rel=1e-6)
    plain = build(name, 6, temperature=2.0)
    assert plain(out(3.0 * s), out(t), y)[name].item() != pytest.approx(plain(out(s), out(t), y)[name].item(), rel=1e-3)


def test_dkd_with_standardisation_is_dkd_of_the_z_scores():
    s, t, y = random_case()
    with_ls = build("dkd", 6, standardize=True, alpha=9.0, beta=54.0, temperature=2.0)
    plain = build("dkd", 6, alpha=9.0, beta=54.0, temperature=2.0)
    assert with_ls(out(s), out(t), y)["dkd"].item() == pytest.approx(
        plain(out(standardize(s)), out(standardize(t)), y)["dkd"].item(), rel=1e-12
    )


# --------------------------------------------------------------------------------------- WSLD


def test_wsld_known_value():
    # label 0; student uniform over 2 classes, teacher (3/4, 1/4) at temperature 1
    ce_s, ce_t = math.log(2.0), math.log(4 / 3)
    weight = 1 - math.exp(-ce_s / (ce_t + 1e-7))
    soft = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))
    assert value("wsld", [[0.0, 0.0]], [[math.log(3.0), 0.0]], [0], temperature=1.0) == pytest.approx(
        weight * soft, rel=1e-12
    )
    # default T = 4: teacher logits 4 log 3 give (3/4, 1/4) at T = 4; the weight uses T = 1
    weight_4 = 1 - math.exp(-math.log(2.0) / (math.log(82 / 81) + 1e-7))
    method = build("wsld", 2)
    assert method.temperature == 4.0
    got = method(out([[0.0, 0.0]]), out([[4 * math.log(3.0), 0.0]]), torch.tensor([0]))
    assert got["wsld"].item() == pytest.approx(16 * weight_4 * soft, rel=1e-12)
    assert got["wsld.weight"].item() == pytest.approx(weight_4, rel=1e-12)


def test_wsld_weight_is_one_minus_one_over_e_when_student_and_teacher_agree():
    s, _, y = random_case()
    terms = build("wsld", 6)(out(s), out(s.clone()), y)
    assert terms["wsld.weight"].item() == pytest.approx(1 - math.exp(-1), rel=1e-6)


def test_wsld_gradient_treats_the_weights_as_constants():
    """d wsld / d s_i = (T / n) w_i (softmax(s_i / T) - softmax(t_i / T)): the weights carry no gradient,
    as in the reference code (so a finite-difference gradcheck, which moves them, does not apply)."""
    s, t, y = random_case()
    s.requires_grad_()
    method = build("wsld", 6)
    method(out(s), out(t), y)["wsld"].backward()
    with torch.no_grad():
        ce_s = -torch.log_softmax(s, 1)[torch.arange(5), y]
        ce_t = -torch.log_softmax(t, 1)[torch.arange(5), y]
        w = 1 - torch.exp(-ce_s / (ce_t + 1e-7))
        expected = (4 / 5) * w[:, None] * (torch.softmax(s / 4, 1) - torch.softmax(t / 4, 1))
    torch.testing.assert_close(s.grad, expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------- DIST


def test_dist_known_value():
    # probabilities chosen directly (logits = T log p): rows (1/2, 1/4, 1/4), (1/4, 1/2, 1/4) vs
    # (1/2, 1/4, 1/4), (1/4, 1/4, 1/2)
    p_s = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]
    p_t = [[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]
    # inter-class: row 1 correlation 1; row 2: centred (-1, 2, -1)/12 and (-1, -1, 2)/12 -> -3/6 = -1/2
    inter = 1 - (1 + -0.5) / 2
    # intra-class: class 0 correlation 1; classes 1 and 2 have a constant column -> correlation 0
    intra = 1 - (1 + 0 + 0) / 3
    for t, beta, gamma in [(1.0, 1.0, 1.0), (4.0, 1.0, 1.0), (2.0, 0.5, 3.0)]:
        logits_s = [[t * math.log(p) for p in row] for row in p_s]
        logits_t = [[t * math.log(p) for p in row] for row in p_t]
        method = build("dist", 3, temperature=t, beta=beta, gamma=gamma)
        terms = method(out(logits_s), out(logits_t), torch.tensor([0, 1]))
        assert terms["dist"].item() == pytest.approx(t * t * (beta * inter + gamma * intra), rel=1e-6)
        assert terms["dist.inter"].item() == pytest.approx(t * t * inter, rel=1e-6)
        assert terms["dist.intra"].item() == pytest.approx(t * t * intra, rel=1e-6)
    default = build("dist", 3)
    assert (default.beta, default.gamma, default.temperature) == (1.0, 1.0, 4.0)


def test_dist_is_zero_when_the_student_matches_the_teacher():
    s, _, y = random_case()
    # not exactly 0: the 1e-8 added to the product of norms (the reference code's) is not small next to
    # the squared norm of centred probabilities at T = 4, and T^2 = 16 multiplies the remainder
    assert 0 <= build("dist", 6)(out(s), out(s.clone()), y)["dist"].item() < 1e-4


# ------------------------------------------------------------------ shared: gradients and checks


CASES = [
    ("dkd", {}),
    ("dkd", {"standardize": True, "alpha": 9.0, "beta": 54.0, "temperature": 2.0}),
    ("wsld", {}),
    ("dist", {}),
    ("kd", {"standardize": True, "temperature": 2.0}),
]


@pytest.mark.parametrize("name,options", CASES)
def test_gradients_reach_the_student_logits_and_not_the_teacher(name, options):
    s, t, y = random_case()
    s.requires_grad_()
    t.requires_grad_()
    terms = build(name, 6, **options)(out(s), out(t), y)
    terms[name].backward()
    assert s.grad is not None and bool(s.grad.abs().sum() > 0)
    if name != "kd":  # the new methods detach the (fixed) teacher; KD leaves that to the trainer
        assert t.grad is None
    assert all(not v.requires_grad for k, v in terms.items() if k != name)  # diagnostics are detached


@pytest.mark.parametrize("name,options", [c for c in CASES if c[0] != "wsld"])
def test_float64_gradcheck(name, options):
    s, t, y = random_case(n=3, k=4, seed=1)
    method = build(name, 4, **options)
    teacher = out(t)

    def loss(z):
        return method(ModelOutput(z, (), torch.zeros(3, 1, dtype=torch.float64)), teacher, y)[name]

    assert torch.autograd.gradcheck(loss, (s.requires_grad_(),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", LOGIT_METHODS)
def test_bad_shapes_and_labels_name_the_method(name):
    s, t, y = random_case()
    method = build(name, 6)
    with pytest.raises(ValueError, match=f"^{name}: student and teacher logits must both have shape"):
        method(out(s), out(t[:, :5]), y)
    with pytest.raises(ValueError, match=f"^{name}: student and teacher batch sizes differ"):
        method(out(s), out(t[:4]), y)
    with pytest.raises(ValueError, match=f"^{name}: student and teacher logits must both have shape"):
        method(out(s), ModelOutput(t[:, :, None], (), torch.zeros(5, 1)), y)
    with pytest.raises(ValueError, match=f"{name} compares the two models' class probabilities"):
        build_method(name, shapes(6), shapes(5))
    with pytest.raises(ValueError, match=f"method '{name}' distils from a teacher"):
        build_method(name, shapes(6), None)
    with pytest.raises(ValueError, match=f"method '{name}' needs the teacher's outputs"):
        method(out(s), None, y)
    if name == "dist":  # labels are not used; the intra-class relation needs two samples
        with pytest.raises(ValueError, match="^dist: the intra-class relation .* at least 2 images"):
            method(out(s[:1]), out(t[:1]), y[:1])
        return
    with pytest.raises(ValueError, match=rf"^{name}: labels must be class indices of shape \(5,\)"):
        method(out(s), out(t), y[:4])
    with pytest.raises(ValueError, match=f"^{name}: labels must be class indices"):
        method(out(s), out(t), y.double())
    with pytest.raises(ValueError, match=rf"^{name}: labels must lie in \[0, 6\)"):
        method(out(s), out(t), torch.tensor([0, 1, 2, 3, 6]))


def test_non_finite_logits_are_rejected():
    s, t, y = random_case()
    s[0, 0] = float("nan")
    with pytest.raises(ValueError, match="dkd: the student logits contains NaN"):
        build("dkd", 6)(out(s), out(t), y)


# -------------------------------------------------------------------------------------- recipes


def test_recipes_carry_the_reference_settings():
    assert METHOD_WEIGHTS["dkd"] == {"ce": 1.0, "dkd": 1.0}
    assert METHOD_WEIGHTS["dkd+ls"] == {"ce": 1.0, "dkd": 1.0}
    assert METHOD_WEIGHTS["kd+ls"] == {"ce": 1.0, "kd": 9.0}
    assert METHOD_WEIGHTS["wsld"] == {"ce": 1.0, "wsld": 2.25}
    assert METHOD_WEIGHTS["dist"] == {"ce": 1.0, "dist": 2.0}
    assert set(METHOD_OPTIONS) <= set(METHOD_WEIGHTS)

    def built(recipe):
        return Objective(METHOD_WEIGHTS[recipe], shapes(6), shapes(6), options=method_options(recipe)).methods

    dkd = built("dkd")["dkd"]
    assert (dkd.alpha, dkd.beta, dkd.temperature, dkd.standardize) == (1.0, 6.0, 4.0, False)
    assert dkd.warmup_fraction == pytest.approx(20 / 240)
    dkd_ls = built("dkd+ls")["dkd"]
    assert (dkd_ls.alpha, dkd_ls.beta, dkd_ls.temperature, dkd_ls.standardize) == (9.0, 54.0, 2.0, True)
    kd_ls = built("kd+ls")["kd"]
    assert (kd_ls.temperature, kd_ls.standardize) == (2.0, True)
    assert built("kd")["kd"].standardize is False
    assert built("wsld")["wsld"].temperature == 4.0
    assert built("dist")["dist"].temperature == 4.0
