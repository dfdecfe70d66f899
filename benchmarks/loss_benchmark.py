"""What ICD costs: its forward+backward time at batch 64 next to one WRN-16-2 training step, and
its state next to CRD's memory bank.

    python benchmarks/loss_benchmark.py [--device cpu|cuda] [--repeats 20]

Prints medians over ``--repeats`` timed runs (after warm-up) and the memory table. On a shared
machine other processes inflate the times; the ratio of ICD to the training step is what matters.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from icd_lib.losses import ICDLoss, build_method, memory_footprint
from icd_lib.outputs import ModelOutput, ModelShapes
from icd_lib.utils import device_description

BATCH = 64
DATASETS = {"CIFAR-100": 50_000, "ImageNet": 1_281_167}


def median_ms(step: Callable[[], None], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``step`` in milliseconds (GPU work included: synchronised around each run)."""
    synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        step()
        synchronise()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def icd_step(device: torch.device, s_shapes: ModelShapes, t_shapes: ModelShapes) -> Callable[[], None]:
    loss = ICDLoss(s_shapes.pooled_dim, t_shapes.pooled_dim).to(device)
    f_s = torch.randn(BATCH, s_shapes.pooled_dim, device=device, requires_grad=True)
    f_t = torch.randn(BATCH, t_shapes.pooled_dim, device=device)

    def step():
        loss(f_s, f_t).backward()

    return step


def crd_step(device: torch.device, s_shapes: ModelShapes, t_shapes: ModelShapes, num_data: int) -> Callable[[], None]:
    crd = build_method("crd", s_shapes, t_shapes, num_data=num_data).to(device)
    zeros = torch.zeros(BATCH, 1, device=device)
    student = ModelOutput(zeros, (), torch.randn(BATCH, s_shapes.pooled_dim, device=device, requires_grad=True))
    teacher = ModelOutput(zeros, (), torch.randn(BATCH, t_shapes.pooled_dim, device=device))
    labels = torch.zeros(BATCH, dtype=torch.long, device=device)
    index = torch.randperm(num_data, device=device)[:BATCH]

    def step():
        crd(student, teacher, labels, index)["crd"].backward()

    return step


def training_step(device: torch.device, model: torch.nn.Module) -> Callable[[], None]:
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(BATCH, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (BATCH,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device: {device_description(device)}; torch {torch.__version__}; batch {BATCH}; fp32")

    try:
        from icd_lib.models import build_model, probe_shapes
    except ImportError as error:
        build_model = None
        print(f"icd_lib.models is not ready ({error}): skipping the WRN-16-2 step")
    if build_model is not None:
        student = build_model("wrn_16_2", num_classes=100)
        s_shapes, t_shapes = probe_shapes(student), probe_shapes(build_model("wrn_40_2", num_classes=100))
    else:  # both WRNs pool 128 channels
        s_shapes = t_shapes = ModelShapes(((128, 8, 8),), 128, 100)

    rows = [
        ("ICD loss, forward + backward", median_ms(icd_step(device, s_shapes, t_shapes), device, args.repeats)),
        (
            "CRD loss (CIFAR-100 bank), forward + backward",
            median_ms(crd_step(device, s_shapes, t_shapes, 50_000), device, args.repeats),
        ),
    ]
    if build_model is not None:
        rows.append(("WRN-16-2 training step (SGD)", median_ms(training_step(device, student), device, args.repeats)))
    for name, ms in rows:
        print(f"{name:<48} {ms:9.2f} ms")
    if build_model is not None:
        print(f"ICD / WRN-16-2 step: {rows[0][1] / rows[-1][1]:.2%}")

    print("\nextra state a method keeps (float32), WRN-40-2 -> WRN-16-2:")
    print(f"{'dataset':<10} {'images':>10} {'ICD params':>12} {'ICD buffers':>12} {'CRD params':>12} {'CRD bank':>12}")
    for dataset, num_data in DATASETS.items():
        icd = memory_footprint("icd", s_shapes, t_shapes, num_data=num_data)
        crd = memory_footprint("crd", s_shapes, t_shapes, num_data=num_data)
        print(
            f"{dataset:<10} {num_data:>10,} {icd['parameters'] / 2**10:>9.1f} KiB {icd['buffers'] / 2**20:>8.1f} MiB "
            f"{crd['parameters'] / 2**10:>9.1f} KiB {crd['buffers'] / 2**20:>8.1f} MiB"
        )


if __name__ == "__main__":
    main()
