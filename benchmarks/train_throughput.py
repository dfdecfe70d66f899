"""Training throughput: a reference-style loop against the library's plain and fast paths.

Part 1 (throughput, ICD+KD at batch 64 on random images of CIFAR shape; throughput does not
depend on the pixels) times three ways of running the same step:

- reference: the paper's code's loop - a DataLoader whose workers augment PIL images one at a
  time (RandomCrop(32, 4), flip, ToTensor, Normalize), fp32, and two host synchronisations per
  step (``loss.item()`` and the batch accuracy, as its meters do);
- plain: ``icd_lib.train.loop.train`` on an ``ImageDataset`` (batched CPU augmentation);
- fast:  ``train`` with ``fast=True`` on a ``GPUResidentLoader`` (bf16, channels_last and, if
  asked, ``torch.compile`` / CUDA graphs; on the CPU the GPU-only features are off).

It prints images/s, ms/step, the speed-up over the reference loop and the projected time of the
240-epoch CIFAR-100 recipe (782 steps per epoch). The library paths run two epochs and are timed
on the second (the first pays for compilation and warm-up).

Part 2 (learning) trains a teacher briefly on Fashion-MNIST (as 32x32x3), then distils students
with ICD+KD through the plain and the fast path, with the same seeds, and prints their test
accuracies: the fast path should learn as well (differences within the spread over seeds).

    python benchmarks/train_throughput.py --small          # CPU, about a minute
    python benchmarks/train_throughput.py --json out.json  # GPU: the paper's pairs
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icd_lib.config import method_weights  # noqa: E402
from icd_lib.data import ImageDataset, dataset_info, load_dataset  # noqa: E402
from icd_lib.losses.base import Objective  # noqa: E402
from icd_lib.models import build_model, probe_shapes  # noqa: E402
from icd_lib.train.fast import GPUResidentLoader  # noqa: E402
from icd_lib.train.loop import train  # noqa: E402
from icd_lib.train.options import RunOptions  # noqa: E402
from icd_lib.train.run_config import TrainConfig  # noqa: E402
from icd_lib.utils import environment_report, get_device, seed_everything  # noqa: E402

CIFAR100 = dataset_info("cifar100")
RECIPE_EPOCHS, RECIPE_STEPS_PER_EPOCH = 240, math.ceil(50_000 / 64)
METHOD = "icd+kd"


def random_cifar(n: int, seed: int = 0) -> ImageDataset:
    """n random uint8 images of CIFAR-100's shape with random labels, augmented as for training."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 100, (n,), generator=g)
    return ImageDataset(images, labels, CIFAR100.class_names, CIFAR100.mean, CIFAR100.std, augment=True, seed=seed)


class PILDataset(Dataset):
    """The reference code's CIFAR dataset: a PIL image per item, transformed one at a time."""

    def __init__(self, dataset: ImageDataset):
        self.images = dataset.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) like torchvision's CIFAR .data
        self.labels = dataset.labels.tolist()
        self.transform = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(dataset.mean, dataset.std)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i], i


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_throughput(teacher_name, student_name, data: ImageDataset, steps, warmup, workers, device) -> dict:
    """Images/s of the paper's loop (see the module docstring), timed over ``steps`` after ``warmup`` steps."""
    seed_everything(0)
    teacher, student = build_model(teacher_name).to(device).eval(), build_model(student_name).to(device)
    objective = Objective(
        {"ce": 1.0, "kd": 1.0, "icd": 1.0}, probe_shapes(student), probe_shapes(teacher), num_data=len(data)
    ).to(device)
    optimizer = torch.optim.SGD([*student.parameters(), *objective.parameters()], lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(
        PILDataset(data), batch_size=64, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", drop_last=True
    )
    if len(loader) < steps + warmup:
        raise ValueError(f"{len(data)} images give {len(loader)} batches, fewer than {steps + warmup} steps")
    loss_meter = correct = seen = 0.0
    start = None
    for step, (x, y, index) in enumerate(loader):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        if step == warmup + steps:
            break
        x, y, index = x.to(device), y.to(device), index.to(device)
        student_out = student(x, with_features=True)
        with torch.no_grad():
            teacher_out = teacher(x, with_features=True)
        loss, _ = objective(student_out, teacher_out, y, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_meter += loss.item() * len(y)  # the reference code's meters: two host syncs a step
        correct += (student_out.logits.argmax(1) == y).float().sum().item()
        seen += len(y)
    synchronize(device)
    return rates(time.perf_counter() - start, steps)


def library_throughput(teacher_name, student_name, data: ImageDataset, steps, fast, device, **fast_options) -> dict:
    """Images/s of ``icd_lib.train.loop.train`` on ``steps`` batches, timed on its second epoch."""
    subset = ImageDataset(data.images[: steps * 64], data.labels[: steps * 64], data.class_names, data.mean, data.std, augment=True)
    test = ImageDataset(data.images[:64], data.labels[:64], data.class_names, data.mean, data.std)
    config = TrainConfig(method=METHOD, weights=method_weights(METHOD), model=student_name, teacher=teacher_name,
                         epochs=2, milestones=(), run_name="fast" if fast else "plain")
    how = RunOptions(device=str(device), fast=fast, progress=False, **fast_options)
    if fast:
        subset = GPUResidentLoader(subset, 64, shuffle=True, device=device, seed=config.seed, channels_last=device.type == "cuda")
        test = GPUResidentLoader(test, 64, shuffle=False, device=device)
    seed_everything(0)
    teacher, student = build_model(teacher_name), build_model(student_name)
    record = train(config, student, subset, test, teacher, how)
    return rates(record.history[-1]["epoch_time_s"], steps)


def rates(seconds: float, steps: int) -> dict:
    ms = 1000 * seconds / steps
    return {
        "images_per_s": 64 * steps / seconds,
        "ms_per_step": ms,
        "projected_recipe_min": ms * RECIPE_STEPS_PER_EPOCH * RECIPE_EPOCHS / 60_000,
    }


def part_throughput(args, device) -> list[dict]:
    rows = []
    for pair in args.pairs:
        teacher_name, student_name = pair.split(":")
        data = random_cifar((args.steps + args.warmup + 1) * 64)
        fast_options = {"compile": args.compile, "cuda_graphs": args.cuda_graphs}
        results = {
            "reference": reference_throughput(teacher_name, student_name, data, args.steps, args.warmup, args.workers, device),
            "plain": library_throughput(teacher_name, student_name, data, args.steps, False, device),
            "fast": library_throughput(teacher_name, student_name, data, args.steps, True, device, **fast_options),
        }
        for path, r in results.items():
            r["speedup_vs_reference"] = r["images_per_s"] / results["reference"]["images_per_s"]
            rows.append({"pair": pair, "path": path, **r})
            print(
                f"{pair:24s} {path:9s} {r['images_per_s']:9.1f} img/s {r['ms_per_step']:9.2f} ms/step "
                f"x{r['speedup_vs_reference']:6.2f}  240 epochs: {r['projected_recipe_min']:8.1f} min",
                flush=True,
            )
    return rows


def part_learning(args, device) -> list[dict]:
    """Teacher once, then students through both paths with the same seeds; test top-1 of each."""
    train_set = load_dataset("fashion_mnist", train=True, size=args.train_size, seed=0)
    test_set = load_dataset("fashion_mnist", train=False, size=args.test_size, seed=0)
    teacher_name, student_name = args.learning_pair.split(":")

    def run(name, method, seed, epochs, fast, teacher=None):
        seed_everything(seed)
        model = build_model(name, num_classes=10)
        config = TrainConfig(
            method=method, weights=method_weights(method), model=name,
            teacher=teacher_name if teacher is not None else None, epochs=epochs, seed=seed,
            run_name=f"{method}-{'fast' if fast else 'plain'}-{seed}",
        )
        train_data, test_data = train_set, test_set
        if fast:
            train_data = GPUResidentLoader(train_set, 64, shuffle=True, device=device, seed=seed, channels_last=device.type == "cuda")
            test_data = GPUResidentLoader(test_set, 256, shuffle=False, device=device)
        record = train(config, model, train_data, test_data, teacher, RunOptions(device=str(device), fast=fast, progress=False))
        return model, record

    teacher, teacher_record = run(teacher_name, "student", 0, args.teacher_epochs, fast=True)
    print(f"teacher {teacher_name}: top-1 {teacher_record.last_top1:.2f}% after {args.teacher_epochs} epochs", flush=True)
    rows = []
    for seed in args.seeds:
        for fast in (False, True):
            _, record = run(student_name, METHOD, seed, args.student_epochs, fast, teacher)
            rows.append({"path": "fast" if fast else "plain", "seed": seed, "last_top1": record.last_top1,
                         "best_top1": record.best_top1, "wall_time_s": record.wall_time_s})
            print(f"student {student_name} {METHOD} {rows[-1]['path']:5s} seed {seed}: top-1 {record.last_top1:.2f}% "
                  f"(best {record.best_top1:.2f}%) in {record.wall_time_s:.1f}s", flush=True)
    for path in ("plain", "fast"):
        accs = [r["last_top1"] for r in rows if r["path"] == path]
        spread = f" +- {statistics.stdev(accs):.2f} (sd over {len(accs)} seeds)" if len(accs) > 1 else ""
        print(f"{path:5s}: mean top-1 {statistics.mean(accs):.2f}%{spread}")
    return [{"teacher_top1": teacher_record.last_top1, **r} for r in rows]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CPU-sized run: a tiny pair, few steps, small data (about a minute)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--pairs", nargs="+", default=["wrn_40_2:wrn_16_2", "resnet32x4:resnet8x4"], help="teacher:student")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps of the reference loop")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference loop (the paper's: 8)")
    parser.add_argument("--compile", action="store_true", help="fast path: torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="fast path: CUDA graphs (implies --compile)")
    parser.add_argument("--parts", nargs="+", choices=["throughput", "learning"], default=["throughput", "learning"])
    parser.add_argument("--learning-pair", default="resnet32x4:wrn_16_2", help="teacher:student of part 2")
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--test-size", type=int, default=None, help="default: all 10,000 test images")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--student-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures and the environment here")
    args = parser.parse_args(argv)
    if args.small:
        small = dict(pairs=["resnet8:resnet8"], steps=5, warmup=1, workers=0, learning_pair="resnet8:resnet8",
                     train_size=640, test_size=320, teacher_epochs=1, student_epochs=1, seeds=[0])
        for key, value in small.items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = get_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    environment = environment_report()
    environment["device"] = str(device) + ": " + environment["device"]
    print(json.dumps(environment), flush=True)
    start = time.perf_counter()
    results = {"environment": environment, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if "throughput" in args.parts:
        results["throughput"] = part_throughput(args, device)
    if "learning" in args.parts:
        results["learning"] = part_learning(args, device)
    results["total_s"] = time.perf_counter() - start
    print(f"total {results['total_s']:.1f}s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
