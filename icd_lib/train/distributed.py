"""Data-parallel training over several processes (``torchrun``), with the global batch for methods that need it.

Each process holds a replica of the student and of the objective's trainable parts (projection
heads, learned scales) and trains on its own block of every global batch
(``GPUResidentLoader(..., shard=Shard(rank, world_size))``). ``DistributedDataParallel`` averages the
gradients over processes after each backward pass.

A loss that is a mean over images gets the global batch's gradient from that average. A loss
that compares each image with the rest of the batch (contrastive negatives) does not: the
processes' local batches are not the global one. ``wrap_for_ddp`` therefore offers every method
of the objective ``gather_pair`` (``Objective.share_batch``, a hook of the loss interface): a
method that takes it gathers its embeddings from all processes (``all_gather_with_grad``), and
its loss and gradients equal those of one process on the concatenated batch
(``tests/test_distributed.py`` checks this with two CPU processes). The trainer names no method.

``icd_lib.train.loop.train(..., how=RunOptions(distributed=init_distributed()))`` puts these
pieces together (``torchrun --nproc_per_node=N -m icd_lib distill ... --distributed`` from the
command line); ``tests/test_distributed.py`` checks that one epoch on two CPU processes ends with
the weights of one process on the global batches.

One difference remains by design: BatchNorm normalises with each process's own batch
statistics. ``wrap_for_ddp(..., sync_batchnorm=True)`` converts it to ``SyncBatchNorm`` on CUDA.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from icd_lib.losses.base import Objective

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class _AllGather(torch.autograd.Function):
    """Forward: concatenate every process's (n, ...) tensor in rank order. Backward: sum the incoming
    gradients over processes (each process's loss may depend on every slice) and return this
    process's slice: an all-reduce followed by a slice, which gloo supports (reduce-scatter it does not)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """(n, ...) on each of k processes -> (k*n, ...), process r's rows at [r*n, (r+1)*n).

    Autograd-aware: the gradient reaching process r's ``x`` is the sum, over all processes, of
    the gradients of their losses with respect to rows [r*n, (r+1)*n). Every process must pass
    the same shape.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("all_gather_with_grad needs torch.distributed initialised (start under torchrun and call init_distributed)")
    return _AllGather.apply(x)


def gather_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, int]:
    """(n, ...) tensors of this process -> the (k*n, ...) tensors of all processes, and the offset
    of this process's rows: the ``gather`` that ``Objective.share_batch`` offers the methods."""
    return all_gather_with_grad(a), all_gather_with_grad(b), dist.get_rank() * a.shape[0]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: rank among world_size processes, its device and backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, records and logs."""
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    Backend ``nccl`` with device ``cuda:LOCAL_RANK`` where CUDA is available, else ``gloo`` on the CPU.
    """
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"environment variables {missing} are not set: start this under torchrun, e.g. "
            "`torchrun --nproc_per_node=2 -m icd_lib ...`"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def per_process_batch_size(global_batch_size: int, world_size: int) -> int:
    """The recipe's batch (64) split over the processes, so that the global batch stays the recipe's."""
    if global_batch_size % world_size:
        raise ValueError(
            f"the batch size {global_batch_size} does not split evenly over {world_size} processes; "
            "choose a batch size divisible by the number of processes"
        )
    return global_batch_size // world_size


def wrap_for_ddp(
    student: nn.Module, objective: Objective, context: DistributedContext, sync_batchnorm: bool = False
) -> tuple[nn.Module, nn.Module]:
    """(student, objective) as DDP replicas whose gradients are averaged over processes.

    The objective is wrapped only if it has trainable parameters, and its methods are offered
    the global batch (``Objective.share_batch``). Build the optimizer from the original
    modules' parameters (DDP shares them) and save the originals' state_dicts.
    Wrap before ``torch.compile``, so that compilation sees DDP's communication buckets.
    """
    if sync_batchnorm:
        if context.device.type != "cuda":
            raise ValueError("SyncBatchNorm needs CUDA; on the CPU each process keeps its own BatchNorm statistics")
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    student = DistributedDataParallel(student.to(context.device), device_ids=device_ids)
    objective.share_batch(gather_pair)
    if any(p.requires_grad for p in objective.parameters()):
        objective = DistributedDataParallel(objective.to(context.device), device_ids=device_ids)
    return student, objective
