"""``python -m icd_lib``: train teachers, distil students, evaluate checkpoints, run sweeps and plans."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from icd_lib.config import METHOD_WEIGHTS, PROFILES
from icd_lib.errors import EXIT_FAILURE, InputError
from icd_lib.models import MODEL_NAMES
from icd_lib.results import aggregate
from icd_lib.utils import process_age

# Exit codes (README, "Errors and exit codes"); expected failures exit with their UserError's code
# (icd_lib.errors: EXIT_FAILURE 2, EXIT_BUSY 3 for a run another process holds)
EXIT_RUNS_FAILED = 1  # plan --run: some runs failed (their logs are named)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

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
  python -m icd_lib distill --profile book --method icd+kd --set icd.alpha=0.1 --set kd=0.5
      change a term's option (icd.alpha) or a loss weight (kd) of the recipe
  python -m icd_lib plan book --status
      how far the book's experiments are: runs done / running / pending per group, time left
  nohup python -m icd_lib plan book --run > plan.log 2>&1 &
      fill the plan in the background (resumable; a second runner shares the work)
  python -m icd_lib plan book --list | parallel -j 4
      one command per pending run, for any scheduler (each runs with --index I)
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
    """The command line: one subcommand per job, sharing the option groups of ``option_groups``."""
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = EPILOG.format(methods=", ".join(METHOD_WEIGHTS), models=", ".join(MODEL_NAMES))
    parser = argparse.ArgumentParser(prog="python -m icd_lib", description=DESCRIPTION, epilog=epilog, formatter_class=formatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, training, recipe, parallel = option_groups()

    def add(name: str, help_: str, parents: list) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_, description=help_, parents=parents, epilog=epilog, formatter_class=formatter)

    add_training_commands(add, common, training, recipe, parallel)
    evaluate = add("evaluate", "test accuracy of a saved model", [common])
    evaluate.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train-teacher/distill")
    evaluate.add_argument("--student", type=model_name, default=None, help="its architecture (default: as recorded)")
    evaluate.add_argument("--teacher-ckpt", default=None, help="also report the class-mean logit difference to this teacher")
    add_plan_command(add("plan", "the book's experiments as a plan: --status, --run, --list or --index I",
                         [common, training, recipe]))
    return parser


def option_groups() -> tuple[argparse.ArgumentParser, ...]:
    """(common, training, recipe, parallel): the options several subcommands share."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", choices=list(PROFILES), default=None,
                        help="compute profile (default: $ICD_PROFILE, else book)")
    common.add_argument("--out", default=".", help="folder for checkpoints/ and results/ (default: .)")
    common.add_argument("--data-root", default=None, help="data folder (default: $ICD_DATA, else data/ in a checkout of the repository, "
                             "else ~/.cache/icd_lib for an installed package)")
    common.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--epochs", type=positive_int, default=None, help="override the profile's number of epochs")
    training.add_argument("--fast", action="store_true", help="GPU fast path: data on the device, bf16 autocast, channels_last")
    training.add_argument("--quiet", action="store_true", help="no progress bars")
    recipe = argparse.ArgumentParser(add_help=False)
    recipe.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="change the recipe: a loss weight (kd=0.5) or a term's option (icd.alpha=0.1); repeatable")
    parallel = argparse.ArgumentParser(add_help=False)
    parallel.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training over the processes torchrun starts (torchrun --nproc_per_node=N -m icd_lib ... "
             "--distributed): each process takes 1/N of every batch on its own device (cuda:LOCAL_RANK, else the CPU "
             "with gloo), ICD's negatives come from the whole batch, rank 0 writes checkpoints and the record",
    )
    return common, training, recipe, parallel


def add_training_commands(add, common, training, recipe, parallel) -> None:
    """``train-teacher``, ``distill`` and ``sweep``."""
    teacher = add("train-teacher", "train a profile's teacher with cross-entropy", [common, training, parallel])
    teacher.add_argument("--teacher", type=model_name, default=None, help="teacher model (default: the profile's)")
    teacher.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    distill = add("distill", "distil a student from a teacher with one method", [common, training, parallel, recipe])
    distill.add_argument("--method", choices=list(METHOD_WEIGHTS), default="icd+kd",
                         help="recipe of loss weights (default: icd+kd; 'student' = no distillation)")
    distill.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    sweep = add("sweep", "run methods x seeds and print the comparison table", [common, training, recipe])
    sweep.add_argument("--method", nargs="+", choices=list(METHOD_WEIGHTS), default=["student", "kd", "icd", "icd+kd"],
                       help="methods to run (default: student kd icd icd+kd)")
    sweep.add_argument("--seeds", nargs="+", type=non_negative_int, default=None, help="seeds (default: the profile's)")
    for command in (distill, sweep):
        command.add_argument("--student", type=model_name, default=None, help="student model (default: the profile's)")
        command.add_argument("--teacher", type=model_name, default=None, help="teacher model (default: the profile's)")


def add_plan_command(plan: argparse.ArgumentParser) -> None:
    """``plan NAME``'s arguments: one action, and which group, how many workers, where to run from."""
    plan.add_argument("name", help="plan name: book (the rendered book, CPU), paper (CIFAR-100, GPU) or smoke")
    action = plan.add_mutually_exclusive_group(required=True)
    action.add_argument("--status", action="store_true", help="runs done / running / pending per group and time left")
    action.add_argument("--run", action="store_true", help="run every pending run (resumable, shares work with other runners)")
    action.add_argument("--list", action="store_true", help="print one command per pending run")
    action.add_argument("--index", type=non_negative_int, help="run the I-th run of the plan alone (what --list prints)")
    action.add_argument("--reevaluate", action="store_true",
                        help="measure the final evaluation of complete runs again from their last.pt (no training)")
    plan.add_argument("--group", default=None, help="only this group of the plan (e.g. comparison-a)")
    plan.add_argument("--workers", type=positive_int, default=None,
                      help="runs at once (default: one single-threaded run per CPU core; 4 on a GPU)")
    plan.add_argument("--no-worktree", action="store_true",
                      help="run from this checkout instead of a worktree at the committed revision")


def device_name(text: str) -> str:
    """An argparse ``type``: a torch device this machine has."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        from icd_lib.runtime import COLAB_GPU

        raise argparse.ArgumentTypeError(f"{text!r} asked for, but torch sees no CUDA GPU here; {COLAB_GPU}; "
                                         "elsewhere, use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda or cuda:N")
    return text


def print_record(record, out: str) -> None:
    from icd_lib.results.records import record_path
    from icd_lib.train.options import results_dir

    print(
        f"{record.name}: best top-1 {record.best_top1:.2f}% (epoch {record.best_epoch}), last top-1 "
        f"{record.last_top1:.2f}%, {record.wall_time_s:.0f} s on {record.device}\n"
        f"  record: {record_path(results_dir(out), record.name)}"
    )


def format_table(rows: list[dict]) -> str:
    """Last-epoch top-1 (the book's primary number), mean +- sample std over seeds."""
    lines = [f"{'method':<10} {'student':<12} {'teacher':<10} {'n':>2}  {'last-epoch top-1 (mean +- std)':>31}"]
    for row in rows:
        std = "" if row["n"] < 2 else f" +- {row['last_top1_std']:.2f}"
        lines.append(f"{row['method']:<10} {row['model']:<12} {row['teacher'] or '-':<10} {row['n']:>2}  "
                     f"{row['last_top1_mean']:>22.2f}{std:<9}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    distributed = join_process_group(parser, args) if getattr(args, "distributed", False) else None
    try:
        return run_command(args, distributed)
    except KeyboardInterrupt:
        if args.debug:
            raise
        parser.exit(EXIT_INTERRUPTED, f"{parser.prog} {args.command}: interrupted; run the same command again to "
                                      "resume (finished epochs and runs are kept)\n")
    except Exception as err:  # noqa: BLE001: every expected failure becomes one line
        if args.debug or not is_expected(err):
            raise
        parser.exit(exit_code(err), f"{parser.prog} {args.command}: error: {err}\n")
    finally:
        if distributed is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def exit_code(err: Exception) -> int:
    """The exit code of an expected failure: the ``UserError``'s own, else ``EXIT_FAILURE``."""
    return getattr(err, "exit_code", EXIT_FAILURE)


def is_expected(err: Exception) -> bool:
    """Failures with a message written for the user: a ``UserError`` (bad input, a missing or
    foreign file, no GPU, a busy run), or an ``OSError`` (the system's own one-line reason: no
    space, no permission)."""
    from icd_lib.errors import UserError

    return isinstance(err, (UserError, OSError))


def run_command(args: argparse.Namespace, distributed) -> int:
    """Carry out one parsed command; return the exit code."""
    from icd_lib.experiments import runs  # imported late: --help stays fast

    profile = args.profile or default_profile()
    how = run_options(args, distributed)
    if args.command in TRAINING_COMMANDS and how.is_main:
        say_runtime(profile, args.device, args.out)
    if args.command == "evaluate":
        result = runs.checkpoint_accuracy(args.checkpoint, profile, args.student, args.teacher_ckpt,
                                          args.data_root, args.device)
        print("  ".join(f"{k}: {v:.4f}" if k == "logit_difference" else f"{k}: {v:.2f}%" for k, v in result.items()))
    elif args.command == "sweep":
        seeds = args.seeds if args.seeds is not None else get_seeds(profile)
        specs = [command_spec(args, profile, method, seed) for method in args.method for seed in seeds]
        print(format_table(aggregate(runs.execute_all(specs, how))))
    elif args.command == "plan":
        return run_plan_command(args, how)
    else:
        record = runs.execute(command_spec(args, profile, getattr(args, "method", "teacher"), args.seed), how)
        if how.is_main:
            print_record(record, args.out)
    return 0


def run_options(args: argparse.Namespace, distributed):
    """How the command runs: output folder, data root, device, fast path, progress, data parallelism."""
    from icd_lib.train.options import RunOptions

    return RunOptions(out=args.out, data_root=args.data_root, device=args.device, fast=getattr(args, "fast", False),
                      progress=not getattr(args, "quiet", True), distributed=distributed)


def command_spec(args: argparse.Namespace, profile: str, method: str, seed: int):
    """What ``train-teacher``, ``distill`` and ``sweep`` run: the spec of ``method`` at ``seed``."""
    from icd_lib.experiments.spec import make_spec, parse_assignments

    if args.command == "train-teacher":
        return make_spec(profile, "teacher", model=args.teacher, seed=seed, epochs=args.epochs)
    weights, options = parse_assignments(args.assignments)
    recipe = dict(model=args.student, epochs=args.epochs, weights=weights, options=options)
    if args.teacher is not None:
        recipe["teacher"] = args.teacher
    return make_spec(profile, method, seed=seed, **recipe)


TRAINING_COMMANDS = ("train-teacher", "distill", "sweep")
SHOWN_FAILURES = 5  # failed runs named in plan --run's last line


def say_runtime(profile: str, device: str | None, out: str) -> None:
    """One line naming the device the runs will use (and their measured time there);
    NeedsGPUError for the ``paper`` recipe on a CPU (``$ICD_ALLOW_CPU=1`` overrides it)."""
    from icd_lib.runtime import check_runtime

    print(f"runtime: {check_runtime(profile, device, out=out)}", flush=True)


def default_profile() -> str:
    from icd_lib.config import get_profile

    return get_profile().name  # $ICD_PROFILE, else book; an unknown name is a clear error


def get_seeds(profile: str) -> tuple[int, ...]:
    from icd_lib.config import get_profile

    return get_profile(profile).seeds


def run_plan_command(args: argparse.Namespace, how) -> int:
    """``plan``: its status, its commands, re-evaluation, one run by index, or all of them."""
    from icd_lib.experiments import runner
    from icd_lib.experiments.plans import plan_groups, plan_specs
    from icd_lib.experiments.runs import execute

    variant = dict(group=args.group, assignments=args.assignments)
    if args.status:
        workers = args.workers or runner.default_workers(args.device)
        rows = runner.plan_status(args.name, args.out, **variant)
        # this process's own start-up (interpreter, torch, icd_lib): what each worker pays at least
        print(runner.format_status(args.name, rows, workers, startup_s=process_age() or 0.0))
    elif args.list:
        print("\n".join(runner.list_commands(args.name, args.out, **variant)))
    elif args.reevaluate:
        skipped = runner.reevaluate_plan(args.name, args.out, args.group, progress=not args.quiet)
        if skipped:
            print(f"{len(skipped)} complete run(s) have no checkpoint here and keep their evaluation: {', '.join(skipped)}")
    elif args.index is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # epochs into the run's log
        specs = plan_specs(plan_groups(args.name, **variant))
        if args.index >= len(specs):
            raise InputError(f"plan {args.name} has {len(specs)} runs (indices 0 to {len(specs) - 1}), not {args.index}")
        record = execute(specs[args.index], how)
        print_record(record, args.out)
    else:
        say_runtime(args.name, args.device, args.out)
        failed = runner.run_plan(args.name, how, args.group, args.workers, use_worktree=not args.no_worktree,
                                 assignments=args.assignments)
        if failed:
            more = f" and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else ""
            print(f"{len(failed)} run(s) failed: {', '.join(failed[:SHOWN_FAILURES])}{more}; their logs are under "
                  f"{args.out}/logs/")
            return EXIT_RUNS_FAILED
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
