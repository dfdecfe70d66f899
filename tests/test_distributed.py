"""Data parallelism on the CPU: two gloo processes must reproduce one process on the concatenated batch."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import icd_lib.losses  # noqa: F401  (registers the loss terms)
from icd_lib.data import ImageDataset
from icd_lib.losses.base import Objective
from icd_lib.losses.icd import ICDLoss
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig
from icd_lib.outputs import ModelOutput, ModelShapes
from icd_lib.train.fast import GPUResidentLoader
from icd_lib.train.loop import train
from icd_lib.train.distributed import (
    DistributedContext,
    all_gather_with_grad,
    gather_pair,
    per_process_batch_size,
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
    """One process of the two: the gradient checks, then one epoch of ``train`` (one spawn for all tests: starting
    a process that imports torch takes most of the time here)."""
    torch.set_num_threads(1)
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

        config, student, teacher, train_set, test_set = training_setup()
        where = Path(out_dir) / "written" / f"rank{rank}"
        record = train(config, student, train_set, test_set, teacher, RunOptions(where, progress=False, distributed=context))
        torch.save({"record": record.to_dict(), "student": student.state_dict()}, f"{out_dir}/trained{rank}.pt")
    finally:
        dist.destroy_process_group()


TRAIN_IMAGES, GLOBAL_BATCH = 48, 8  # 6 steps per epoch


def training_setup():
    """A one-epoch ICD+KD run of BatchNorm-free models on 8x8 images, identical in every process."""
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (TRAIN_IMAGES + 16,), generator=g)
    images = (labels[:, None, None, None] * 50 + torch.randint(0, 80, (TRAIN_IMAGES + 16, 3, 8, 8), generator=g)).to(torch.uint8)
    stats = ((0.5,) * 3, (0.25,) * 3)
    train_set = ImageDataset(images[:TRAIN_IMAGES], labels[:TRAIN_IMAGES], list("abcd"), *stats)
    test_set = ImageDataset(images[TRAIN_IMAGES:], labels[TRAIN_IMAGES:], list("abcd"), *stats)
    torch.manual_seed(2)
    student, teacher = TinyNet(6), TinyNet(10)
    config = TrainConfig(method="icd+kd", weights=WEIGHTS, model="tiny6", teacher="tiny10", epochs=1,
                         batch_size=GLOBAL_BATCH, milestones=(), lr=0.1)
    return config, student, teacher, train_set, test_set


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> Path:
    """The folder the two processes wrote to.

    Forked, not spawned: the children inherit the imported modules, where spawned ones import
    torch and icd_lib again (30-45 s on a loaded 2-core machine, against about 1 s). Forking is
    safe here because the parent's torch runs a single thread (tests/conftest.py) and no CUDA.
    """
    out = tmp_path_factory.mktemp("ddp")
    processes = mp.start_processes(worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="fork")
    deadline = time.monotonic() + 120
    while not processes.join(timeout=2):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            pytest.fail("the two gloo processes did not finish within 120 s")
    return out


@pytest.fixture(scope="module")
def distributed_results(spawned):
    return [torch.load(spawned / f"rank{r}.pt") for r in range(WORLD)]


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


def test_only_methods_that_compare_across_the_batch_take_the_global_batch():
    _, _, objective, _, _ = build()
    assert all(m.gather is None for m in objective.modules() if isinstance(m, ICDLoss))
    assert objective.share_batch(gather_pair) == ["icd"]
    assert all(m.gather is gather_pair for m in objective.modules() if isinstance(m, ICDLoss))
    kd_only = Objective({"ce": 0.1, "kd": 0.9}, ModelShapes(((6, 8, 8),), 6, 4), ModelShapes(((10, 8, 8),), 10, 4))
    assert kd_only.share_batch(gather_pair) == []


def test_gather_outside_a_process_group_and_bad_batch_splits_are_refused():
    with pytest.raises(RuntimeError, match="torchrun"):
        all_gather_with_grad(torch.zeros(2))
    assert per_process_batch_size(64, 4) == 16
    with pytest.raises(ValueError, match="divisible"):
        per_process_batch_size(64, 3)


@pytest.mark.slow
def test_two_process_training_equals_one_process_with_the_global_batch_and_only_rank0_writes(spawned):
    """Plain path, one process, batch 8 vs. two DDP processes on their device-resident shares of 4."""
    config, student, teacher, train_set, test_set = training_setup()
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    single = train(config, student, train_set, test_set, teacher, RunOptions(progress=False))
    results = [torch.load(spawned / f"trained{r}.pt", weights_only=False) for r in range(WORLD)]

    for name, weight in student.state_dict().items():
        assert (weight - initial[name]).abs().max() > 1e-3, name  # training moved every weight: the comparison means something
        for result in results:
            torch.testing.assert_close(result["student"][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    for result in results:  # every process returns the global history
        (entry,) = result["record"]["history"]
        assert entry["train_loss"] == pytest.approx(single.history[0]["train_loss"], rel=1e-5)
        for term, value in single.history[0]["terms"].items():
            assert entry["terms"][term] == pytest.approx(value, rel=1e-4, abs=1e-6), term
        assert (entry["test_top1"], entry["test_top5"]) == (single.history[0]["test_top1"], single.history[0]["test_top5"])
        assert result["record"]["device"].startswith(f"{WORLD} x ")
    written = sorted(str(p.relative_to(spawned / "written")) for p in (spawned / "written").rglob("*") if p.is_file())
    assert written == ["rank0/checkpoints/run/best.pt", "rank0/checkpoints/run/last.pt", "rank0/results/run.json"]
    saved = torch.load(spawned / "written" / "rank0" / "checkpoints" / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in results[0]["student"].items())


def test_distributed_training_data_must_be_this_process_share():
    config, student, teacher, train_set, test_set = training_setup()
    rank1 = DistributedContext(1, WORLD, 0, torch.device("cpu"), "gloo")
    with pytest.raises(TypeError, match="GPUResidentLoader"):
        train(config, student, list(zip(train_set.images, train_set.labels)), test_set, teacher,
              RunOptions(progress=False, distributed=rank1))
    whole = GPUResidentLoader(train_set, GLOBAL_BATCH)
    with pytest.raises(ValueError, match="rank 0 of 1 with batches of 8, but this process is rank 1 of 2"):
        train(config, student, whole, test_set, teacher, RunOptions(progress=False, distributed=rank1))
    with pytest.raises(ValueError, match="leave device None"):
        train(config, student, train_set, test_set, teacher, RunOptions(device="cuda", progress=False, distributed=rank1))
