"""Data parallelism on the CPU: two gloo processes must reproduce one process on the concatenated batch."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import icd_lib.losses  # noqa: F401  (registers the loss terms)
from icd_lib.losses.base import Objective
from icd_lib.losses.icd import ICDLoss
from icd_lib.outputs import ModelOutput, ModelShapes
from icd_lib.train.distributed import (
    DistributedContext,
    all_gather_with_grad,
    per_process_batch_size,
    use_global_negatives,
    wrap_for_ddp,
)

WORLD, PER_RANK = 2, 5
WEIGHTS = {"ce": 1.0, "kd": 1.0, "icd": 1.0}  # ICD+KD


class TinyNet(nn.Module):
    """A BatchNorm-free convnet with the zoo's forward contract (BatchNorm would normalise per process)."""

    def __init__(self, width: int, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x, with_features: bool = False):
        h = torch.tanh(self.conv(x))
        pooled = h.mean(dim=(2, 3))
        logits = self.classifier(pooled)
        return ModelOutput(logits, (h,), pooled) if with_features else logits


def build():
    """Student, teacher, objective and a global batch, identical in every process."""
    torch.manual_seed(0)
    student, teacher = TinyNet(6), TinyNet(10)
    objective = Objective(WEIGHTS, ModelShapes(((6, 8, 8),), 6, 4), ModelShapes(((10, 8, 8),), 10, 4))
    x = torch.randn(WORLD * PER_RANK, 3, 8, 8)
    y = torch.randint(0, 4, (WORLD * PER_RANK,))
    return student, teacher.eval(), objective, x, y


def loss_of(student, teacher, objective, x, y):
    with torch.no_grad():
        teacher_out = teacher(x, with_features=True)
    return objective(student(x, with_features=True), teacher_out, y)[0]


def named_grads(student, objective):
    modules = {"student": student, "objective": objective}
    return {f"{m}.{n}": p.grad.clone() for m, module in modules.items() for n, p in module.named_parameters() if p.grad is not None}


def worker(rank: int, port: int, out_dir: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        context = DistributedContext(rank, WORLD, 0, torch.device("cpu"), "gloo")
        student, teacher, objective, x, y = build()
        local = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        ddp_student, ddp_objective = wrap_for_ddp(student, objective, context)
        loss = loss_of(ddp_student, teacher, ddp_objective, x[local], y[local])
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= WORLD

        # the same step with local negatives only, as the authors' multi-GPU code computes it
        _, _, local_objective, _, _ = build()
        local_loss = loss_of(student, teacher, local_objective, x[local], y[local]).detach()
        dist.all_reduce(local_loss)
        local_loss /= WORLD

        # the gather alone: process r's loss is c_r * sum(gathered^3), c_r = r + 1
        part = torch.arange(3.0, requires_grad=True) + 10 * rank
        part.retain_grad()
        ((rank + 1) * all_gather_with_grad(part).pow(3).sum()).backward()

        torch.save(
            {
                "loss": mean_loss,
                "local_negatives_loss": local_loss,
                "grads": named_grads(student, objective),
                "gathered": all_gather_with_grad(torch.full((2,), float(rank))).detach(),
                "part_grad": part.grad,
                "part": part.detach(),
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.slow
def test_ddp_loss_and_gradients_equal_one_process_on_the_concatenated_batch(distributed_results):
    student, teacher, objective, x, y = build()
    loss = loss_of(student, teacher, objective, x, y)
    loss.backward()
    expected = named_grads(student, objective)
    assert any("embed_s" in k for k in expected) and any("tau" in k for k in expected)
    for result in distributed_results:
        torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        assert result["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # local negatives (the authors' multi-GPU code) give a different loss: the test can tell them apart
    assert (distributed_results[0]["local_negatives_loss"] - loss.detach()).abs() > 1e-3


@pytest.mark.slow
def test_all_gather_with_grad_concatenates_in_rank_order_and_sums_gradients(distributed_results):
    for rank, result in enumerate(distributed_results):
        assert torch.equal(result["gathered"], torch.tensor([0.0, 0.0, 1.0, 1.0]))
        # d/dpart of sum_r (r+1) * sum(gathered^3) = (1 + 2) * 3 * part^2
        torch.testing.assert_close(result["part_grad"], 3 * 3 * result["part"] ** 2)
        assert torch.equal(result["part"], torch.arange(3.0) + 10 * rank)


def test_use_global_negatives_switches_every_icd_loss_and_only_those():
    _, _, objective, _, _ = build()
    assert use_global_negatives(objective) == 1
    assert all(m.gather is not None for m in objective.modules() if isinstance(m, ICDLoss))
    kd_only = Objective({"ce": 0.1, "kd": 0.9}, ModelShapes(((6, 8, 8),), 6, 4), ModelShapes(((10, 8, 8),), 10, 4))
    assert use_global_negatives(kd_only) == 0


def test_gather_outside_a_process_group_and_bad_batch_splits_are_refused():
    with pytest.raises(RuntimeError, match="torchrun"):
        all_gather_with_grad(torch.zeros(2))
    assert per_process_batch_size(64, 4) == 16
    with pytest.raises(ValueError, match="divisible"):
        per_process_batch_size(64, 3)
