"""``python -m icd_lib``: train teachers, distil students, evaluate checkpoints, run sweeps."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from icd_lib.config import METHOD_WEIGHTS, PROFILES
from icd_lib.models import MODEL_NAMES
from icd_lib.results import aggregate
from icd_lib.train.checkpoint import CheckpointError

DESCRIPTION = """\
Train and distil the models of the ICD book (Invariant Consistency Distillation).

A profile decides the data, the models and the epochs:
  smoke  a minute on a laptop CPU; checks that everything runs
  book   Fashion-MNIST, resnet20 teacher -> resnet8 student; a few minutes per run on a CPU
  paper  the paper's CIFAR-100 recipe (WRN-40-2 -> WRN-16-2, 240 epochs); for a GPU

Everything goes under --out (default: the current folder):
  checkpoints/<run>/best.pt, last.pt   an interrupted run resumes from last.pt when rerun
  results/<run>.json                   the run's record: config, per-epoch metrics, accuracy, device, commit
"""

EPILOG = """\
examples:
  python -m icd_lib train-teacher --profile book
      train the book's teacher once (distill and sweep also do this when it is missing)
  python -m icd_lib distill --profile book --method icd+kd --seed 0
      distil the resnet8 student with ICD + KD from that teacher
  python -m icd_lib distill --profile smoke --method kd --epochs 2 --out /tmp/try
      a quick trial run that writes nothing into the repository
  python -m icd_lib evaluate --profile book --checkpoint checkpoints/book-icd+kd-resnet8-from-resnet20-seed0/best.pt
      test accuracy of a saved model (add --teacher-ckpt to compare its logits with a teacher's)
  python -m icd_lib sweep --profile book --method student kd icd icd+kd --seeds 0 1 2
      the comparison table: every method x seed, skipping runs already recorded
  torchrun --nproc_per_node=2 -m icd_lib distill --profile paper --fast --distributed
      one run over 2 GPUs (data parallel; train-teacher takes --distributed too)

methods: {methods}
models:  {models}
"""


def int_at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum``."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return integer


non_negative_int, positive_int = int_at_least(0), int_at_least(1)


def model_name(text: str) -> str:
    if text.lower() not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; valid models: {', '.join(MODEL_NAMES)}")
    return text.lower()


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = EPILOG.format(methods=", ".join(METHOD_WEIGHTS), models=", ".join(MODEL_NAMES))
    parser = argparse.ArgumentParser(prog="python -m icd_lib", description=DESCRIPTION, epilog=epilog, formatter_class=formatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", choices=list(PROFILES), default=None,
                        help="compute profile (default: $ICD_PROFILE, else book)")
    common.add_argument("--out", default=".", help="folder for checkpoints/ and results/ (default: .)")
    common.add_argument("--data-root", default=None, help="data folder (default: $ICD_DATA, else the repository's data/)")
    common.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--epochs", type=positive_int, default=None, help="override the profile's number of epochs")
    training.add_argument("--fast", action="store_true", help="GPU fast path: data on the device, bf16 autocast, channels_last")
    training.add_argument("--quiet", action="store_true", help="no progress bars")
    parallel = argparse.ArgumentParser(add_help=False)
    parallel.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training over the processes torchrun starts (torchrun --nproc_per_node=N -m icd_lib ... "
             "--distributed): each process takes 1/N of every batch on its own device (cuda:LOCAL_RANK, else the CPU "
             "with gloo), ICD's negatives come from the whole batch, rank 0 writes checkpoints and the record",
    )

    def add(name: str, help_: str, parents: list) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_, description=help_, parents=parents, epilog=epilog, formatter_class=formatter)

    teacher = add("train-teacher", "train a profile's teacher with cross-entropy", [common, training, parallel])
    teacher.add_argument("--teacher", type=model_name, default=None, help="teacher model (default: the profile's)")
    teacher.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")

    distill = add("distill", "distil a student from a teacher with one method", [common, training, parallel])
    distill.add_argument("--method", choices=list(METHOD_WEIGHTS), default="icd+kd",
                         help="recipe of loss weights (default: icd+kd; 'student' = no distillation)")
    distill.add_argument("--student", type=model_name, default=None, help="student model (default: the profile's)")
    distill.add_argument("--teacher", type=model_name, default=None, help="teacher model (default: the profile's)")
    distill.add_argument("--teacher-ckpt", default=None,
                         help="teacher checkpoint (default: the profile's teacher under --out, trained if missing)")
    distill.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")

    evaluate = add("evaluate", "test accuracy of a saved model", [common])
    evaluate.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train-teacher/distill")
    evaluate.add_argument("--student", type=model_name, default=None, help="its architecture (default: as recorded)")
    evaluate.add_argument("--teacher-ckpt", default=None, help="also report the class-mean logit difference to this teacher")

    sweep = add("sweep", "run methods x seeds and print the comparison table", [common, training])
    sweep.add_argument("--method", nargs="+", choices=list(METHOD_WEIGHTS), default=["student", "kd", "icd", "icd+kd"],
                       help="methods to run (default: student kd icd icd+kd)")
    sweep.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="seeds (default: the profile's)")
    sweep.add_argument("--student", type=model_name, default=None, help="student model (default: the profile's)")
    sweep.add_argument("--teacher", type=model_name, default=None, help="teacher model (default: the profile's)")
    return parser


def print_record(record, out: str) -> None:
    from icd_lib.train.runs import record_path, results_dir

    print(
        f"{record.name}: best top-1 {record.best_top1:.2f}% (epoch {record.best_epoch}), last top-1 "
        f"{record.last_top1:.2f}%, {record.wall_time_s:.0f} s on {record.device}\n"
        f"  record: {record_path(results_dir(out), record.name)}"
    )


def format_table(rows: list[dict]) -> str:
    lines = [f"{'method':<10} {'student':<10} {'teacher':<10} {'n':>2}  {'best top-1 (mean +- std)':>26}"]
    for row in rows:
        std = "" if row["n"] < 2 else f" +- {row['best_top1_std']:.2f}"
        lines.append(f"{row['method']:<10} {row['student']:<10} {row['teacher'] or '-':<10} {row['n']:>2}  "
                     f"{row['best_top1_mean']:>17.2f}{std:<9}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from icd_lib.train import runs  # imported late: --help stays fast

    distributed = join_process_group(parser, args) if getattr(args, "distributed", False) else None
    is_main = distributed is None or distributed.is_main
    where = dict(out=args.out, data_root=args.data_root, device=args.device)
    try:
        if args.command == "train-teacher":
            record = runs.train_teacher(args.profile, args.seed, teacher=args.teacher, epochs=args.epochs, fast=args.fast,
                                        progress=not args.quiet, distributed=distributed, **where)
            if is_main:
                print_record(record, args.out)
        elif args.command == "distill":
            record = runs.distill(args.profile, args.method, args.seed, args.teacher_ckpt, student=args.student,
                                  teacher=args.teacher, epochs=args.epochs, fast=args.fast, progress=not args.quiet,
                                  distributed=distributed, **where)
            if is_main:
                print_record(record, args.out)
        elif args.command == "evaluate":
            result = runs.evaluate(args.checkpoint, args.profile, args.student, args.teacher_ckpt,
                                   data_root=args.data_root, device=args.device)
            print("  ".join(f"{k}: {v:.4f}" if k == "logit_difference" else f"{k}: {v:.2f}%" for k, v in result.items()))
        elif args.command == "sweep":
            records = runs.sweep(args.profile, args.method, args.seeds, student=args.student, teacher=args.teacher,
                                 epochs=args.epochs, fast=args.fast, progress=not args.quiet, **where)
            print(format_table(aggregate(records)))
    except (FileNotFoundError, CheckpointError) as err:
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")
    finally:
        if distributed is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def join_process_group(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """This process's ``DistributedContext`` (``--distributed``); a usage error outside torchrun or with ``--device``."""
    if args.device is not None:
        parser.error("--distributed gives each process its own device (cuda:LOCAL_RANK, else the CPU); leave out --device")
    from icd_lib.train.distributed import init_distributed

    try:
        return init_distributed()
    except RuntimeError as err:
        parser.exit(2, f"{parser.prog} {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
