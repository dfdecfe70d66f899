"""Every baseline: a value worked out by hand on a tiny example, and a loss that falls as the
student moves towards the teacher."""
from __future__ import annotations

import math

import pytest
import torch

from icd_lib.losses import build_method
from icd_lib.losses.rkd import angles
from icd_lib.outputs import ModelOutput, ModelShapes


def num(t: torch.Tensor) -> float:
    return t.detach().item()


def output(features=(), pooled=None, logits=None) -> ModelOutput:
    features = tuple(torch.as_tensor(f, dtype=torch.float32) for f in features)
    n = features[0].shape[0] if features else torch.as_tensor(pooled if pooled is not None else logits).shape[0]
    pooled = torch.zeros(n, 1) if pooled is None else torch.as_tensor(pooled, dtype=torch.float32)
    logits = torch.zeros(n, 1) if logits is None else torch.as_tensor(logits, dtype=torch.float32)
    return ModelOutput(logits, features, pooled)


def shapes_of(out: ModelOutput) -> ModelShapes:
    return ModelShapes(tuple(tuple(f.shape[1:]) for f in out.features), out.pooled.shape[1], out.logits.shape[1])


def run(name, student, teacher, index=None, method=None, **options):
    method = method or build_method(name, shapes_of(student), shapes_of(teacher), **options)
    labels = torch.zeros(student.logits.shape[0], dtype=torch.long)
    return method(student, teacher, labels, index)


STEM = torch.zeros(2, 1, 1, 1)  # stage methods leave the stem out; its value must not matter


# ---------------------------------------------------------------- known values, worked by hand


def test_ce_known_value():
    student = output(logits=[[0.0, math.log(3.0)]])
    labels = torch.tensor([1])
    method = build_method("ce", shapes_of(student), None)
    assert not method.needs_teacher
    # softmax = (1/4, 3/4): -log(3/4)
    assert num(method(student, None, labels)["ce"]) == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_kd_known_value_with_temperature_4_and_t_squared():
    student = output(logits=[[0.0, 0.0]])
    teacher = output(logits=[[4 * math.log(3.0), 0.0]])  # at T = 4: softmax = (3/4, 1/4)
    expected = 16 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5))
    assert num(run("kd", student, teacher)["kd"]) == pytest.approx(expected, rel=1e-6)
    t1 = torch.softmax(torch.tensor([4 * math.log(3.0), 0.0]), 0)
    expected_t1 = sum(p * math.log(p / 0.5) for p in t1.tolist())
    assert num(run("kd", student, teacher, temperature=1.0)["kd"]) == pytest.approx(expected_t1, rel=1e-6)


def test_fitnet_known_value_with_identity_regressor():
    hint_s = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    hint_t = torch.tensor([0.0, 4.0]).view(1, 2, 1, 1)
    stage = torch.zeros(1, 2, 1, 1)
    student, teacher = output([stage, stage, hint_s, stage]), output([stage, stage, hint_t, stage])
    method = build_method("fitnet", shapes_of(student), shapes_of(teacher))
    assert method.hint_layer == 2
    identity_regressor(method.regressor)
    k = math.sqrt(1 + 1e-5)  # BatchNorm in eval mode with its initial statistics divides by sqrt(1 + eps)
    expected = ((3 / k - 0) ** 2 + (4 / k - 4) ** 2) / 2
    assert num(run("fitnet", student, teacher, method=method)["fitnet"]) == pytest.approx(expected, rel=1e-5)


def test_at_known_value():
    student = output([STEM[:1], torch.tensor([[[[1.0, 0.0]]]])])
    teacher = output([STEM[:1], torch.tensor([[[[0.0, 1.0]]]])])
    # maps (1, 0) and (0, 1), already unit: mean of squared differences = (1 + 1) / 2
    assert num(run("at", student, teacher)["at"]) == pytest.approx(1.0)


def test_at_pools_the_larger_map():
    student = output([STEM[:1], torch.ones(1, 3, 4, 4)])
    teacher = output([STEM[:1], torch.ones(1, 5, 2, 2)])
    assert num(run("at", student, teacher)["at"]) == pytest.approx(0.0, abs=1e-12)


def test_sp_known_value():
    student = output([STEM, torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)])
    teacher = output([STEM, torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(2, 2, 1, 1)])
    # G_s = I; G_t = all ones -> rows (1/sqrt2, 1/sqrt2); ||G_s - G_t||^2 = 2 ((1 - r)^2 + r^2), r = 1/sqrt2
    r = 1 / math.sqrt(2)
    assert num(run("sp", student, teacher)["sp"]) == pytest.approx(2 * ((1 - r) ** 2 + r**2) / 4, rel=1e-6)


def test_cc_known_value_with_identity_heads():
    student = output(pooled=[[1.0, 0.0], [0.0, 1.0]])
    teacher = output(pooled=[[1.0, 0.0], [1.0, 0.0]])
    method = build_method("cc", shapes_of(student), shapes_of(teacher), feat_dim=2)
    identity_linear(method.embed_s)
    identity_linear(method.embed_t)
    # C(d) = e^-0.8 (1 + 0.8 d + 0.32 d^2); the off-diagonal cosines are 0 (student) and 1 (teacher)
    off_diagonal_gap = math.exp(-0.8) * (0.8 + 0.32)
    expected = 2 * off_diagonal_gap**2 / 4
    assert num(run("cc", student, teacher, method=method)["cc"]) == pytest.approx(expected, rel=1e-6)


def test_cc_taylor_series_approaches_the_gaussian_kernel():
    from icd_lib.losses.cc import rbf_correlation

    z = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=1)
    exact = torch.exp(-0.4 * torch.cdist(z, z).pow(2))
    torch.testing.assert_close(rbf_correlation(z, 0.4, order=12), exact, rtol=1e-10, atol=1e-10)
    assert (rbf_correlation(z, 0.4, order=2) - exact).abs().max() > 1e-4  # order 2 is an approximation


def test_rkd_known_value_on_a_line():
    student = output(pooled=[[0.0], [1.0], [2.0]])
    teacher = output(pooled=[[0.0], [1.0], [3.0]])
    # teacher distances 1, 3, 2 (mean 2) -> .5, 1.5, 1; student 1, 2, 1 (mean 4/3) -> .75, 1.5, .75
    # two pairs differ by .25, each entered twice in the 3x3 matrix: smooth L1 = 4 * 0.5 * 0.25^2 / 9
    # angles: on a line every cosine is +-1 with the same signs for both, so the angle term is 0
    terms = run("rkd", student, teacher)
    assert num(terms["rkd.distance"]) == pytest.approx(4 * 0.5 * 0.25**2 / 9, rel=1e-5)
    assert num(terms["rkd.angle"]) == pytest.approx(0.0, abs=1e-7)
    assert num(terms["rkd"]) == pytest.approx(25 * 4 * 0.5 * 0.25**2 / 9, rel=1e-5)


def test_rkd_angles_of_a_right_isosceles_triangle():
    a = angles(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert num(a[0, 1, 2]) == pytest.approx(0.0, abs=1e-7)  # right angle at vertex 0
    assert num(a[1, 0, 2]) == pytest.approx(1 / math.sqrt(2), rel=1e-6)  # 45 degrees at vertex 1
    assert num(a[0, 0, 1]) == 0.0


def test_pkt_known_value():
    student = output(pooled=[[1.0, 0.0], [0.0, 1.0]])
    teacher = output(pooled=[[1.0, 0.0], [1.0, 0.0]])
    # student: (cos + 1) / 2 = [[1, .5], [.5, 1]] -> rows (2/3, 1/3); teacher: all 1 -> rows (1/2, 1/2)
    # each row: .5 log(.5 / (2/3)) + .5 log(.5 / (1/3)) = .5 log(1.125); mean over the 4 entries
    assert num(run("pkt", student, teacher)["pkt"]) == pytest.approx(math.log(1.125) / 4, rel=1e-5)


def test_vid_known_value_with_zero_mean_predictor():
    student = output([STEM[:1], torch.ones(1, 1, 1, 2)])
    teacher = output([STEM[:1], torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)])
    method = build_method("vid", shapes_of(student), shapes_of(teacher))
    with torch.no_grad():
        method.stages[0].mean[-1].weight.zero_()
    # mu = 0, sigma^2 = 5: mean of 0.5 (t^2 / 5 + log 5) over t = 1, 2
    expected = 0.5 * ((1 / 5 + 4 / 5) / 2 + math.log(5))
    assert num(run("vid", student, teacher, method=method)["vid"]) == pytest.approx(expected, rel=1e-5)
    assert "stages.0.variance_logit" in dict(method.named_parameters())


def test_nst_known_value():
    student = output([STEM[:1], torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)])
    teacher = output([STEM[:1], torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 2, 1, 2)])
    # squared dot products: (s, s) = I -> mean .5; (t, t) = ones -> 1; (s, t) = [[1, 1], [0, 0]] -> .5
    assert num(run("nst", student, teacher)["nst"]) == pytest.approx(1 + 0.5 - 2 * 0.5, rel=1e-6)


def nce_by_hand(positive, negatives, z, k, n_data, eps=1e-7):
    """-log h+/(h+ + K/N) - sum log (K/N)/(h- + K/N), h = exp(score / 0.07) / Z; one anchor."""
    h = lambda s: math.exp(s / 0.07) / z  # noqa: E731
    noise = k / n_data
    value = -math.log(h(positive) / (h(positive) + noise + eps))
    return value - sum(math.log(noise / (h(s) + noise + eps)) for s in negatives)


def test_crd_known_value_and_memory_update():
    student = output(pooled=[[1.0, 0.0], [0.0, 1.0]])
    teacher = output(pooled=[[1.0, 0.0], [0.6, 0.8]])
    method = build_method("crd", shapes_of(student), shapes_of(teacher), num_data=2, feat_dim=2)
    assert method.num_negatives == 1  # capped at num_data - 1: with 2 images the negative is the other one
    identity_linear(method.embed_s)
    identity_linear(method.embed_t)
    bank_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bank_s = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    method.memory_t.copy_(bank_t)
    method.memory_s.copy_(bank_s)
    index = torch.tensor([0, 1])
    terms = run("crd", student, teacher, index=index, method=method)

    # student anchors vs the teacher bank: anchor 0 scores (pos 1, neg 0), anchor 1 (pos 1, neg 0)
    s_scores = [(1.0, [0.0]), (1.0, [0.0])]
    # teacher anchors vs the student bank: anchor 0 = (1, 0): pos bank_s[0] -> 0, neg bank_s[1] -> 1;
    # anchor 1 = (.6, .8): pos bank_s[1] -> .6, neg bank_s[0] -> .8
    t_scores = [(0.0, [1.0]), (0.6, [0.8])]
    expected = 0.0
    for scores in (s_scores, t_scores):
        exps = [math.exp(s / 0.07) for pos, negs in scores for s in [pos, *negs]]
        z = 2 * sum(exps) / len(exps)  # Z = N * mean exp(score / T), fixed from the first batch
        expected += sum(nce_by_hand(pos, negs, z, 1, 2) for pos, negs in scores) / 2
    assert num(terms["crd"]) == pytest.approx(expected, rel=1e-5)

    # momentum 0.5, then renormalised
    new_t0 = torch.nn.functional.normalize(0.5 * bank_t[0] + 0.5 * torch.tensor([1.0, 0.0]), dim=0)
    new_s1 = torch.nn.functional.normalize(0.5 * bank_s[1] + 0.5 * torch.tensor([0.0, 1.0]), dim=0)
    torch.testing.assert_close(method.memory_t[0], new_t0)
    torch.testing.assert_close(method.memory_s[1], new_s1)
    loss_again = run("crd", student, teacher, index=index, method=method)["crd"]  # Z stays fixed, bank moved
    assert num(loss_again) != pytest.approx(num(terms["crd"]))


def test_crd_negatives_exclude_the_positive_and_cover_the_rest():
    shapes = ModelShapes(((1, 1, 1),), 4, 2)
    method = build_method("crd", shapes, shapes, num_data=5, num_negatives=64)
    assert method.num_negatives == 4 and method.negative_sampling == "instance-level"
    torch.manual_seed(0)
    index = torch.tensor([0, 2, 4, 4])
    negatives = torch.cat([method.sample_negatives(index) for _ in range(50)], dim=1)
    assert not (negatives == index.unsqueeze(1)).any()
    for row, positive in zip(negatives, index.tolist()):
        assert set(row.tolist()) == set(range(5)) - {positive}
    assert build_method("crd", shapes, shapes, num_data=50_000).num_negatives == 16384


CRD_SHAPES = ModelShapes(((1, 1, 1),), 4, 2)


def crd_with_labels(labels: list[int], num_negatives: int):
    return build_method(
        "crd", CRD_SHAPES, CRD_SHAPES, num_data=len(labels), num_negatives=num_negatives,
        train_labels=torch.tensor(labels),
    )


def draws_per_anchor(method, index: torch.Tensor, times: int) -> list[torch.Tensor]:
    """(times, K) negatives of each anchor in ``index``, sampled ``times`` times."""
    batches = torch.stack([method.sample_negatives(index) for _ in range(times)])  # (times, n, K)
    return list(batches.unbind(1))


# classes of 12 images, shuffled so that no class is a contiguous run of dataset indices
LABELS_12 = [2, 0, 1, 1, 2, 0, 1, 2, 1, 0, 1, 2]  # class sizes 3, 5, 4: 9, 7, 8 images outside each


@pytest.mark.parametrize("num_negatives", [5, 64])  # 5 fits every class (no replacement), 64 none (K = 11)
def test_crd_class_aware_negatives_come_from_every_other_class_image_and_never_the_anchors_class(num_negatives):
    method = crd_with_labels(LABELS_12, num_negatives)
    assert method.negative_sampling == "class-aware"
    torch.manual_seed(0)
    index = torch.arange(12)
    for anchor, draws in zip(index.tolist(), draws_per_anchor(method, index, times=400)):
        other_class = {j for j, c in enumerate(LABELS_12) if c != LABELS_12[anchor]}
        assert set(draws.flatten().tolist()) == other_class
        counts = torch.bincount(draws.flatten(), minlength=12)[sorted(other_class)].double()
        assert counts.min() > 0.75 * counts.mean() and counts.max() < 1.25 * counts.mean()  # uniform over them


def test_crd_class_aware_negatives_are_distinct_when_the_anchors_other_classes_hold_k_images():
    # class 0 has 8 of 12 images: its anchors have 4 others (< K = 5: with replacement, like the
    # authors' code), anchors of classes 1 and 2 have 10 (>= K: without replacement)
    labels = [0, 1, 0, 0, 2, 0, 0, 1, 0, 2, 0, 0]
    method = crd_with_labels(labels, num_negatives=5)
    torch.manual_seed(0)
    index = torch.tensor([0, 1, 4, 2])
    for anchor, draws in zip(index.tolist(), draws_per_anchor(method, index, times=200)):
        other_class = {j for j, c in enumerate(labels) if c != labels[anchor]}
        assert set(draws.flatten().tolist()) == other_class
        distinct_per_draw = {len(set(row.tolist())) for row in draws}
        if labels[anchor] == 0:
            assert distinct_per_draw <= {1, 2, 3, 4}
        else:
            assert distinct_per_draw == {5}


def test_crd_train_labels_are_checked_and_not_saved():
    with pytest.raises(ValueError, match="11 labels but num_data is 12"):
        build_method("crd", CRD_SHAPES, CRD_SHAPES, num_data=12, train_labels=torch.zeros(11, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        build_method("crd", CRD_SHAPES, CRD_SHAPES, num_data=3, train_labels=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="single class"):
        crd_with_labels([4, 4, 4], num_negatives=2)
    with pytest.raises(ValueError, match=">= 0"):
        crd_with_labels([0, -1, 1], num_negatives=2)
    # labels come from the data, not the checkpoint: both kinds of CRD load each other's state
    class_aware = crd_with_labels(LABELS_12, num_negatives=5)
    instance_level = build_method("crd", CRD_SHAPES, CRD_SHAPES, num_data=12, num_negatives=5)
    assert class_aware.state_dict().keys() == instance_level.state_dict().keys()
    instance_level.load_state_dict(class_aware.state_dict())


def test_crd_needs_num_data_and_valid_indices():
    shapes = ModelShapes(((1, 1, 1),), 4, 2)
    with pytest.raises(ValueError, match="num_data"):
        build_method("crd", shapes, shapes)
    method = build_method("crd", shapes, shapes, num_data=10)
    assert method.needs_index
    student = output(pooled=torch.randn(3, 4))
    with pytest.raises(ValueError, match="indices"):
        run("crd", student, student, method=method)
    with pytest.raises(ValueError, match="outside"):
        run("crd", student, student, index=torch.tensor([0, 1, 10]), method=method)
    with pytest.raises(ValueError, match="int64"):
        run("crd", student, student, index=torch.tensor([0.0, 1.0, 2.0]), method=method)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_crd_features_of_another_dtype_are_one_clear_error(dtype):
    """Today a raw "mat1 and mat2 must have the same dtype" from the projection head."""
    shapes = ModelShapes(((1, 1, 1),), 4, 2)
    method = build_method("crd", shapes, shapes, num_data=10)
    half = ModelOutput(torch.zeros(3, 2), (), torch.randn(3, 4, dtype=dtype))
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=rf"^crd: expected student features of dtype float32 .*got {name}; "
                                         r"cast them with \.to\(torch\.float32\)") as err:
        run("crd", half, output(pooled=torch.randn(3, 4)), index=torch.arange(3), method=method)
    assert "\n" not in str(err.value)


def test_crd_wrong_feature_width_is_one_clear_error():
    """Today a raw "mat1 and mat2 shapes cannot be multiplied (3x5 and 4x128)"."""
    shapes = ModelShapes(((1, 1, 1),), 4, 2)
    method = build_method("crd", shapes, shapes, num_data=10)
    wide = output(pooled=torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"^crd: expected student features of shape \(n, 4\) float32, got \(3, 5\)"):
        run("crd", wide, output(pooled=torch.randn(3, 4)), index=torch.arange(3), method=method)


def test_crd_in_float64_takes_float64_features():
    shapes = ModelShapes(((1, 1, 1),), 4, 2)
    method = build_method("crd", shapes, shapes, num_data=10, num_negatives=4).double()
    pooled = ModelOutput(torch.zeros(3, 2, dtype=torch.float64), (), torch.randn(3, 4, dtype=torch.float64))
    terms = run("crd", pooled, pooled, index=torch.arange(3), method=method)
    assert terms["crd"].dtype == torch.float64 and math.isfinite(num(terms["crd"]))


# ---------------------------------------------------------------- the loss falls towards the teacher


def identity_linear(layer):
    with torch.no_grad():
        layer.weight.copy_(torch.eye(*layer.weight.shape))
        layer.bias.zero_()


def identity_conv(conv):
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(min(conv.weight.shape[:2])):
            conv.weight[c, c].fill_(1.0)
        if conv.bias is not None:
            conv.bias.zero_()


def identity_regressor(regressor):
    identity_conv(regressor[0])
    regressor.eval()  # BatchNorm with its initial statistics: x / sqrt(1 + eps)


def align(name, method):
    """Set a method's trainable parts so that a student equal to the teacher is its optimum."""
    if name == "fitnet":
        identity_regressor(method.regressor)
    elif name in ("cc", "crd"):
        identity_linear(method.embed_s)
        identity_linear(method.embed_t)
    elif name == "vid":
        for stage in method.stages:
            for layer in stage.mean:
                if isinstance(layer, torch.nn.Conv2d):
                    identity_conv(layer)


FEATURE_SHAPES = ((4, 8, 8), (4, 8, 8), (8, 4, 4), (8, 2, 2))


def random_output(seed, n=6) -> ModelOutput:
    g = torch.Generator().manual_seed(seed)
    features = tuple(torch.randn(n, *s, generator=g).relu() for s in FEATURE_SHAPES)
    return ModelOutput(torch.randn(n, 5, generator=g), features, torch.randn(n, 8, generator=g).relu())


def between(a: ModelOutput, b: ModelOutput, weight: float) -> ModelOutput:
    """(1 - weight) a + weight b, field by field."""
    mix = lambda x, y: (1 - weight) * x + weight * y  # noqa: E731
    return ModelOutput(mix(a.logits, b.logits), tuple(map(mix, a.features, b.features)), mix(a.pooled, b.pooled))


@pytest.mark.parametrize("name", ["kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "vid", "nst", "crd"])
def test_loss_falls_as_the_student_moves_to_the_teacher(name):
    teacher, far = random_output(0), random_output(1)
    shapes = ModelShapes(FEATURE_SHAPES, 8, 5)
    torch.manual_seed(0)
    method = build_method(name, shapes, shapes, num_data=6, **({"feat_dim": 8} if name in ("cc", "crd") else {}))
    align(name, method)
    index = torch.arange(6)
    if name == "crd":  # a teacher whose images are told apart; both banks hold its embeddings
        teacher = teacher._replace(pooled=torch.eye(6, 8) * 3)
        bank = torch.eye(6, 8)
        z = 6 * (6 * math.exp(1 / 0.07) + 30) / 36  # N * mean exp(score / T), the first-batch rule, at the teacher
    values = []
    for weight in (1.0, 0.3, 0.1, 0.0):  # weight of the far point: 0 is the teacher itself
        if name == "crd":  # the same banks, Z and negatives at every point
            method.memory_s, method.memory_t = bank.clone(), bank.clone()
            method.normaliser.fill_(z)
            torch.manual_seed(1)
        terms = method(between(teacher, far, weight), teacher, torch.zeros(6, dtype=torch.long), index)
        values.append(num(terms[name]))
    assert values[0] > values[1] > values[2] > values[3], values


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "vid", "nst", "crd", "icd"])
def test_every_distiller_needs_a_teacher(name):
    shapes = ModelShapes(FEATURE_SHAPES, 8, 5)
    with pytest.raises(ValueError, match="teacher"):
        build_method(name, shapes, None, num_data=6)
    method = build_method(name, shapes, shapes, num_data=6)
    with pytest.raises(ValueError, match="teacher"):
        method(random_output(0), None, torch.zeros(6, dtype=torch.long), torch.arange(6))


@pytest.mark.parametrize("name", ["kd", "fitnet", "at", "sp", "cc", "rkd", "pkt", "vid", "nst", "crd"])
def test_batch_size_mismatch_and_nan_are_clear_errors(name):
    shapes = ModelShapes(FEATURE_SHAPES, 8, 5)
    method = build_method(name, shapes, shapes, num_data=6)
    small = ModelOutput(*(x[:4] if torch.is_tensor(x) else tuple(f[:4] for f in x) for x in random_output(1)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        method(small, random_output(0), torch.zeros(4, dtype=torch.long), torch.arange(4))
    broken = random_output(1)
    broken = ModelOutput(
        broken.logits * float("nan"), tuple(f * float("nan") for f in broken.features), broken.pooled * float("nan")
    )
    with pytest.raises(ValueError, match="NaN or Inf"):
        method(broken, random_output(0), torch.zeros(6, dtype=torch.long), torch.arange(6))


def test_kd_rejects_logits_of_different_shape():
    with pytest.raises(ValueError, match="same classes"):
        run("kd", output(logits=torch.zeros(2, 3)), output(logits=torch.zeros(2, 4)))


def test_kd_errors_speak_of_logits():
    with pytest.raises(ValueError, match="student logits contains NaN"):
        run("kd", output(logits=torch.full((2, 3), float("nan"))), output(logits=torch.zeros(2, 3)))
    with pytest.raises(TypeError, match="teacher logits must be floating point"):
        run("kd", output(logits=torch.zeros(2, 3)), ModelOutput(torch.zeros(2, 3, dtype=torch.long), (), torch.zeros(2, 1)))


def test_stage_methods_reject_outputs_with_more_stages_than_they_were_built_for():
    shapes = ModelShapes(FEATURE_SHAPES[:3], 8, 5)
    method = build_method("vid", shapes, shapes)
    with pytest.raises(ValueError, match="built for 2 stages but got 3"):
        method(random_output(1), random_output(0), torch.zeros(6, dtype=torch.long))


def test_ce_rejects_float_labels():
    method = build_method("ce", ModelShapes((), 1, 2), None)
    with pytest.raises(ValueError, match="class indices"):
        method(output(logits=torch.zeros(2, 2)), None, torch.zeros(2))


def test_stage_methods_reject_models_with_different_stage_counts():
    student = output([STEM, torch.ones(2, 1, 2, 2)])
    teacher = output([STEM, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2)])
    for name in ("at", "nst"):
        with pytest.raises(ValueError, match="feature maps"):
            run(name, student, teacher)


def test_fitnet_rejects_a_student_map_smaller_than_a_quarter():
    student = ModelShapes(((1, 2, 2),) * 3, 1, 2)
    teacher = ModelShapes(((1, 8, 8),) * 3, 1, 2)
    with pytest.raises(ValueError, match="hint_layer"):
        build_method("fitnet", student, teacher)


def test_unknown_option_is_an_error():
    shapes = ModelShapes(FEATURE_SHAPES, 8, 5)
    with pytest.raises(TypeError, match="temprature"):
        build_method("kd", shapes, shapes, temprature=4)
