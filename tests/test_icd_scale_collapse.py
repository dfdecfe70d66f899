"""ICD's learned logit scale collapses at a large loss weight, and the term then goes inert.

The ablations chapter reads this in the records of beta = 100 (and of two seeds at beta = 10):
the scale s = exp(tau) falls to about 0 within the first epoch, the contrastive term sits at
log(batch), chance, and the invariance term at 0. These tests pin the mechanism on a toy: a
student that can align with the teacher only slowly (it sees the teacher's input through noise),
trained with the book's optimiser (SGD, lr 0.05, momentum 0.9, weight decay 5e-4).
"""
import math

import pytest
import torch

from icd_lib.losses.icd import ICDLoss

BATCH = 64


def train_toy(weight: float, seed: int, steps: int = 100) -> dict[str, float]:
    """Optimise ``weight * L_icd`` of a linear student against a fixed random teacher; the last
    step's scale, terms, and the student's gradient per unit of weight."""
    torch.manual_seed(seed)
    loss = ICDLoss(32, 32)
    student, teacher = torch.nn.Linear(24, 32), torch.nn.Linear(24, 32)
    optimiser = torch.optim.SGD([*loss.parameters(), *student.parameters()], lr=0.05, momentum=0.9,
                                weight_decay=5e-4)
    for _ in range(steps):
        x = torch.randn(BATCH, 24)
        terms = loss.terms(torch.relu(student(x + 2 * torch.randn_like(x))), torch.relu(teacher(x)).detach())
        optimiser.zero_grad()
        (weight * loss.combine(terms)).backward()
        gradient = float(student.weight.grad.norm()) / weight
        optimiser.step()
    return {"scale": float(loss.logit_scale().detach()), "contrast": float(terms["contrast"]),
            "invariance": float(terms["invariance"]), "gradient": gradient}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_large_weight_collapses_the_scale_and_the_term_goes_inert(seed):
    collapsed = train_toy(100.0, seed)
    assert collapsed["scale"] < 1e-2
    assert collapsed["contrast"] == pytest.approx(math.log(BATCH), abs=1e-2)  # chance: log(batch)
    assert abs(collapsed["invariance"]) < 1e-4
    assert collapsed["gradient"] < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_weight_learns_a_scale_and_matches(seed):
    learned = train_toy(1.0, seed)
    assert learned["scale"] > 2.0
    assert learned["contrast"] < math.log(BATCH) - 0.5
    assert learned["gradient"] > 0.1


def test_a_vanishing_scale_is_an_absorbing_state():
    """At s -> 0 every logit is b: the contrast is log(n) exactly, P = Q (invariance 0), and the
    gradients to the features and to tau are proportional to s, so nothing pulls s back up."""
    torch.manual_seed(0)
    loss = ICDLoss(16, 16, init_tau=-20.0)
    f_s = torch.randn(BATCH, 16, requires_grad=True)
    terms = loss.terms(f_s, torch.randn(BATCH, 16))
    assert float(terms["contrast"]) == pytest.approx(math.log(BATCH), abs=1e-6)
    assert float(terms["invariance"]) == pytest.approx(0.0, abs=1e-9)
    loss.combine(terms).backward()
    assert float(f_s.grad.abs().max()) < 1e-8
    assert abs(float(loss.tau.grad)) < 1e-8


def test_unaligned_embeddings_push_the_scale_down():
    """For random (unaligned) embeddings dL/dtau > 0: the log-sum-exp over the batch grows with s
    faster than the positive pair's logit. Written out: dL/ds = mean_i (E_P[z_s.z_t] - z_s_i.z_t_i)."""
    torch.manual_seed(0)
    loss = ICDLoss(16, 16, alpha=0.0)
    f_s, f_t = torch.randn(BATCH, 16), torch.randn(BATCH, 16)
    loss(f_s, f_t).backward()
    z_s, z_t = loss.embed(f_s, f_t)
    similarity = (z_s @ z_t.T).detach()
    p = (loss.logit_scale().detach() * similarity).softmax(dim=1)
    by_hand = float(((p * similarity).sum(1) - similarity.diagonal()).mean()) * float(loss.logit_scale())
    assert float(loss.tau.grad) == pytest.approx(by_hand, rel=1e-4)
    assert float(loss.tau.grad) > 0
