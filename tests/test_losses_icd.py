"""ICDLoss against the formula written out by hand in float64, its properties, and its errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from icd_lib.losses import ICDLoss, build_method
from icd_lib.losses.common import check_finite
from icd_lib.outputs import ModelOutput, ModelShapes


def num(t: torch.Tensor) -> float:
    return t.detach().item()


def reference_icd(loss: ICDLoss, f_s: torch.Tensor, f_t: torch.Tensor) -> dict[str, float]:
    """The authors' DCD loss (giakoumoglou/distillers) with NumPy float64 loops: only the module's weights."""
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    w_s, c_s = as_np(loss.embed_s.weight), as_np(loss.embed_s.bias)
    w_t, c_t = as_np(loss.embed_t.weight), as_np(loss.embed_t.bias)
    scale = min(math.exp(loss.tau.item()), loss.max_scale)
    bias = loss.bias.item()
    z_s = [w_s @ row + c_s for row in as_np(f_s)]
    z_t = [w_t @ row + c_t for row in as_np(f_t)]
    z_s = [z / math.sqrt(sum(v * v for v in z)) for z in z_s]
    z_t = [z / math.sqrt(sum(v * v for v in z)) for z in z_t]
    n = len(z_s)
    logits = [[scale * sum(a * b for a, b in zip(z_s[i], z_t[j])) + bias for j in range(n)] for i in range(n)]
    p = [[math.exp(logits[i][j]) / sum(math.exp(logits[i][k]) for k in range(n)) for j in range(n)] for i in range(n)]
    q = [[math.exp(logits[j][i]) / sum(math.exp(logits[k][i]) for k in range(n)) for j in range(n)] for i in range(n)]
    contrast = sum(-math.log(p[i][i]) for i in range(n)) / n
    invariance = sum(q[i][j] * math.log(q[i][j] / p[i][j]) for i in range(n) for j in range(n)) / n
    return {
        "contrast": contrast,
        "invariance": invariance,
        "total": contrast + loss.alpha * invariance,
        "logits": np.array(logits),
        "p": np.array(p),
        "q": np.array(q),
    }


def make_loss(s_dim=12, t_dim=20, seed=0, **options) -> ICDLoss:
    torch.manual_seed(seed)
    loss = ICDLoss(s_dim, t_dim, **options).double()
    with torch.no_grad():  # move tau and bias off their defaults so the test sees them
        if isinstance(loss.tau, torch.nn.Parameter):
            loss.tau.fill_(0.7)
        loss.bias.fill_(0.3)
    return loss


def features(n, s_dim=12, t_dim=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, s_dim, generator=g, dtype=torch.float64),
        torch.randn(n, t_dim, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "n, s_dim, t_dim, feat_dim, alpha",
    [(2, 3, 5, 4, 0.5), (5, 12, 20, 8, 0.5), (9, 7, 7, 16, 1.0), (16, 32, 8, 128, 0.0)],
)
def test_matches_formula_written_out_in_float64(n, s_dim, t_dim, feat_dim, alpha):
    loss = make_loss(s_dim, t_dim, feat_dim=feat_dim, alpha=alpha)
    f_s, f_t = features(n, s_dim, t_dim)
    expected = reference_icd(loss, f_s, f_t)
    terms = loss.terms(f_s, f_t)
    assert num(terms["contrast"]) == pytest.approx(expected["contrast"], rel=1e-10)
    assert num(terms["invariance"]) == pytest.approx(expected["invariance"], rel=1e-9, abs=1e-14)
    assert num(loss(f_s, f_t)) == pytest.approx(expected["total"], rel=1e-10)
    np.testing.assert_allclose(loss.logit_matrix(f_s, f_t).detach().numpy(), expected["logits"], rtol=1e-10)
    p, q = loss.matching_distributions(f_s, f_t)
    np.testing.assert_allclose(p.detach().numpy(), expected["p"], rtol=1e-10)
    np.testing.assert_allclose(q.detach().numpy(), expected["q"], rtol=1e-10)


def test_scale_is_clamped_and_can_be_fixed():
    fixed = ICDLoss(4, 4, init_tau=5.0, learn_scale=False)  # exp(5) = 148 > 10
    assert num(fixed.logit_scale()) == pytest.approx(10.0)
    assert "tau" not in dict(fixed.named_parameters())
    assert "tau" in dict(fixed.named_buffers())
    learned = ICDLoss(4, 4)
    assert num(learned.logit_scale()) == pytest.approx(math.e)
    assert {"tau", "bias", "embed_s.weight", "embed_t.weight"} <= set(dict(learned.named_parameters()))
    assert isinstance(learned.embed_s, torch.nn.Linear) and isinstance(learned.embed_t, torch.nn.Linear)


def test_gradcheck_float64_inputs_and_parameters():
    loss = make_loss(4, 5, feat_dim=3)
    f_s, f_t = features(3, 4, 5)
    f_s.requires_grad_(True)
    f_t.requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (f_s, f_t))

    names = ["tau", "embed_s.weight", "embed_t.bias"]
    base = dict(loss.named_parameters())

    def of_parameters(*values):
        return functional_call(loss, {**base, **dict(zip(names, values))}, (f_s.detach(), f_t.detach()))

    values = tuple(base[k].detach().clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(of_parameters, values)


def test_permuting_the_batch_leaves_the_loss_unchanged():
    loss = make_loss()
    f_s, f_t = features(10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(perm, torch.arange(10))
    assert num(loss(f_s[perm], f_t[perm])) == pytest.approx(num(loss(f_s, f_t)), rel=1e-12)


def test_only_directions_of_projected_rows_matter():
    loss = make_loss()
    with torch.no_grad():  # without head biases, scaling an input row scales its projected row
        loss.embed_s.bias.zero_()
        loss.embed_t.bias.zero_()
    f_s, f_t = features(8)
    g = torch.Generator().manual_seed(4)
    scale_s = torch.rand(8, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    scale_t = torch.rand(8, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    assert num(loss(f_s * scale_s, f_t * scale_t)) == pytest.approx(num(loss(f_s, f_t)), rel=1e-12)


def test_bias_has_no_effect_on_loss_or_gradients():
    f_s, f_t = features(6)
    results = []
    for bias in (0.0, 5.0):
        loss = make_loss()
        with torch.no_grad():
            loss.bias.fill_(bias)
        value = loss(f_s, f_t)
        value.backward()
        results.append((num(value), {k: p.grad.clone() for k, p in loss.named_parameters()}))
        assert abs(num(loss.bias.grad)) < 1e-12
    (value_0, grads_0), (value_5, grads_5) = results
    assert value_0 == pytest.approx(value_5, rel=1e-12)
    for name, grad in grads_0.items():
        torch.testing.assert_close(grad, grads_5[name], rtol=1e-9, atol=1e-12)
    assert num(grads_0["tau"]) != 0.0  # the scale, unlike the bias, does matter


@pytest.mark.parametrize("seed", range(5))
def test_both_terms_are_non_negative(seed):
    loss = make_loss(seed=seed)
    f_s, f_t = features(7, seed=seed + 10)
    terms = loss.terms(f_s, f_t)
    assert num(terms["contrast"]) > 0
    assert num(terms["invariance"]) >= 0


@pytest.mark.parametrize("scale", [5.0, 10.0, 20.0])
def test_contrast_vanishes_for_aligned_separated_features_at_large_scale(scale):
    n = 6
    loss = ICDLoss(n, n, feat_dim=n, init_tau=math.log(scale), max_scale=scale, learn_scale=False).double()
    with torch.no_grad():
        for head in (loss.embed_s, loss.embed_t):
            head.weight.copy_(torch.eye(n))
            head.bias.zero_()
    one_hot = torch.eye(n, dtype=torch.float64) * 3
    terms = loss.terms(one_hot, one_hot)
    # each row: -log(e^s / (e^s + (n - 1) e^0)) = log(1 + (n - 1) e^-s), which goes to 0 as s grows
    assert num(terms["contrast"]) == pytest.approx(math.log1p((n - 1) * math.exp(-scale)), rel=1e-5)
    assert num(terms["invariance"]) < 1e-12  # P = Q when the logit matrix is symmetric


def test_alpha_zero_is_contrast_only():
    loss = make_loss(alpha=0.0)
    f_s, f_t = features(5)
    assert num(loss(f_s, f_t)) == pytest.approx(num(loss.terms(f_s, f_t)["contrast"]), rel=1e-12)


def test_two_simulated_ranks_combine_to_the_full_batch_loss_and_gradients():
    """With an all-gather that concatenates the halves, mean(rank losses) = full loss, same gradients."""
    f_s, f_t = features(8)
    halves = [(f_s[:4], f_t[:4]), (f_s[4:], f_t[4:])]

    full = make_loss()
    full(f_s, f_t).backward()
    full_value = make_loss()(f_s, f_t)

    shared = make_loss()  # one set of weights stands for the replicas DDP keeps equal

    def fake_gather(rank):
        def gather(z_s, z_t):
            parts = [shared.embed(*halves[r]) if r != rank else (z_s, z_t) for r in range(2)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), 4 * rank

        return gather

    rank_losses = []
    for rank in range(2):
        shared.gather = fake_gather(rank)
        rank_losses.append(shared(*halves[rank]))
    combined = (rank_losses[0] + rank_losses[1]) / 2  # DDP averages the ranks' gradients
    combined.backward()
    assert num(combined) == pytest.approx(num(full_value), rel=1e-12)
    for name, p in full.named_parameters():
        torch.testing.assert_close(dict(shared.named_parameters())[name].grad, p.grad, rtol=1e-10, atol=1e-13)
    # and it differs from using only local negatives, which is what the gather fixes
    local_only = make_loss()
    local = (local_only(*halves[0]) + local_only(*halves[1])) / 2
    assert abs(num(local) - num(full_value)) > 1e-3


@pytest.mark.parametrize(
    "f_s, f_t, message",
    [
        (torch.randn(1, 4), torch.randn(1, 6), "at least 2"),
        (torch.randn(3, 4), torch.randn(2, 6), "batch sizes differ"),
        (torch.randn(3, 5), torch.randn(3, 6), r"shape \(n, 4\)"),
        (torch.randn(3, 4), torch.randn(3, 6, 1), r"shape \(n, 6\)"),
        (torch.tensor([[0.0, 1, 2, float("nan")], [1.0, 2, 3, 4]]), torch.randn(2, 6), "NaN or Inf"),
        (torch.randn(2, 4), torch.tensor([[float("inf")] * 6, [1.0] * 6]), "NaN or Inf"),
    ],
)
def test_bad_input_is_a_clear_error(f_s, f_t, message):
    with pytest.raises(ValueError, match=message):
        ICDLoss(4, 6)(f_s, f_t)


def test_integer_features_are_a_type_error():
    with pytest.raises(TypeError, match="floating point"):
        ICDLoss(4, 6)(torch.ones(2, 4, dtype=torch.long), torch.randn(2, 6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("who", ["student", "teacher"])
def test_features_of_another_dtype_than_the_heads_are_one_clear_error(dtype, who):
    """Today a raw "mat1 and mat2 must have the same dtype"; the message names the loss, the dtype and the fix."""
    f_s, f_t = torch.randn(3, 4), torch.randn(3, 6)
    f_s, f_t = (f_s.to(dtype), f_t) if who == "student" else (f_s, f_t.to(dtype))
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=rf"^ICDLoss: expected {who} features of dtype float32 .*got {name}; "
                                         r"cast them with \.to\(torch\.float32\)") as err:
        ICDLoss(4, 6)(f_s, f_t)
    assert "\n" not in str(err.value)


def test_wrong_width_names_the_loss_the_width_and_the_dtype():
    with pytest.raises(ValueError, match=r"^ICDLoss: expected teacher features of shape \(n, 6\) float32, "
                                         r"got \(3, 7\) float32; pass the pooled penultimate features of the teacher"):
        ICDLoss(4, 6)(torch.randn(3, 4), torch.randn(3, 7))


def test_float64_heads_take_float64_features_and_autocast_casts_for_itself():
    loss = ICDLoss(4, 6).double()
    value = loss(torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64))
    assert value.dtype == torch.float64 and math.isfinite(num(value))
    with pytest.raises(ValueError, match="expected student features of dtype float64"):
        loss(torch.randn(3, 4), torch.randn(3, 6, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts the heads' inputs: no dtype rule there
        assert math.isfinite(num(ICDLoss(4, 6)(torch.randn(3, 4, dtype=torch.bfloat16), torch.randn(3, 6))))


@pytest.mark.parametrize("kwargs", [{"s_dim": 0}, {"feat_dim": 2.5}, {"alpha": -1.0}, {"max_scale": 0.0}])
def test_bad_construction_is_a_clear_error(kwargs):
    with pytest.raises(ValueError):
        ICDLoss(**{"s_dim": 4, "t_dim": 6, **kwargs})


def test_finite_check_reads_no_device_data():
    """Off the CPU (here: the meta device, which has no data to read) the check is skipped."""
    check_finite("x", torch.empty(3, device="meta"))  # would raise if it tried to read the values
    with pytest.raises(ValueError, match="NaN"):
        check_finite("x", torch.tensor([float("nan")]))


def test_registered_icd_uses_pooled_features_and_exposes_its_parameters():
    s_shapes = ModelShapes(((4, 8, 8),), pooled_dim=6, num_classes=3)
    t_shapes = ModelShapes(((4, 8, 8),), pooled_dim=10, num_classes=3)
    method = build_method("icd", s_shapes, t_shapes, alpha=0.25, feat_dim=16)
    assert method.needs_teacher and not method.needs_index
    torch.manual_seed(0)
    student = ModelOutput(torch.randn(5, 3), (torch.randn(5, 4, 8, 8),), torch.randn(5, 6))
    teacher = ModelOutput(torch.randn(5, 3), (torch.randn(5, 4, 8, 8),), torch.randn(5, 10))
    terms = method(student, teacher, torch.zeros(5, dtype=torch.long))
    assert set(terms) == {"icd", "icd.contrast", "icd.invariance", "icd.scale"}
    expected = terms["icd.contrast"] + 0.25 * terms["icd.invariance"]
    assert num(terms["icd"]) == pytest.approx(num(expected), rel=1e-6)
    assert num(terms["icd"]) == pytest.approx(num(method.loss(student.pooled, teacher.pooled)), rel=1e-6)
    names = {name for name, _ in method.named_parameters()}
    heads = {f"loss.embed_{who}.{kind}" for who in "st" for kind in ("weight", "bias")}
    assert names == {"loss.tau", "loss.bias"} | heads
    fixed = build_method("icd", s_shapes, t_shapes, learn_scale=False)
    assert "loss.tau" not in {name for name, _ in fixed.named_parameters()}
