"""How to use a CPU's cores for many small runs: one single-threaded run per core, or one run with
every core's threads? Measures distillation steps per second of the book's pair (resnet20 teacher
forward, resnet8 student forward and backward, KD, batch 64, 32x32x3) in both layouts.

    python benchmarks/worker_layout.py --steps 40 --out benchmarks/results/worker-layout.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone


def steps_per_second(steps: int, threads: int) -> float:
    """Run ``steps`` KD steps in this process with ``threads`` torch threads; return steps/s."""
    import torch
    import torch.nn.functional as F

    from icd_lib.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher = build_model("resnet20", num_classes=10).eval()
    student = build_model("resnet8", num_classes=10)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))

    def step():
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        loss = 0.1 * F.cross_entropy(s, y) + 0.9 * 16 * F.kl_div(
            F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), reduction="batchmean", log_target=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def layout(processes: int, threads: int, steps: int) -> dict:
    """``processes`` concurrent processes of ``threads`` threads each: their summed steps/s."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, __file__, "--child", "--steps", str(steps), "--threads", str(threads)]
    children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    rates = [float(child.communicate()[0].strip()) for child in children]
    return {"processes": processes, "threads_each": threads, "steps_per_s_each": rates, "steps_per_s_total": sum(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    if args.child:
        print(steps_per_second(args.steps, args.threads))
        return
    cores = os.cpu_count() or 1
    result = {
        "machine": f"{platform.machine()}, {cores} cores", "python": platform.python_version(),
        "load_average_before": os.getloadavg(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "one_run_per_core": layout(cores, 1, args.steps),
        "one_run_all_threads": layout(1, cores, args.steps),
        "load_average_after": os.getloadavg(),
    }
    ratio = result["one_run_per_core"]["steps_per_s_total"] / result["one_run_all_threads"]["steps_per_s_total"]
    result["per_core_over_all_threads"] = ratio
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
