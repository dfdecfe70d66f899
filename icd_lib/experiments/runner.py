"""Filling a plan: status, a scheduler of worker processes, and one run by index.

``run_plan`` starts one process per run (``python -m icd_lib plan NAME --index I``), at most
``workers`` at a time, from a git worktree at the committed revision (so editing the code while
a plan runs never changes a run in flight, and every record names the commit that trained it).
Each process takes its run's lock (``icd_lib.experiments.lock``): two runners on one plan share
the work, and a run is never trained twice at once. Complete runs are skipped, interrupted ones
resume from ``last.pt``, and a student starts only once its teacher is complete. Killing the
runner (even with SIGKILL) loses no finished record: records are written atomically at the end
of each run, and the next ``--run`` continues where this one stopped.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from icd_lib.experiments.lock import EXIT_BUSY, is_locked
from icd_lib.experiments.plans import group_of, plan_groups, plan_specs
from icd_lib.experiments.runs import checkpoint_dir, is_complete, spec_record_path
from icd_lib.experiments.spec import RunSpec, load_run_record
from icd_lib.train.options import RunOptions
from icd_lib.utils import wrap_fields

POLL_S = 2.0
SHARED_CAUSE_RUNS = 3  # this many failures in a row for the same reason stop the plan


def run_state(spec: RunSpec, out: str | Path) -> str:
    """``done``, ``running`` (some process holds its lock) or ``pending``."""
    if is_complete(spec, out):
        return "done"
    return "running" if is_locked(checkpoint_dir(out, spec.name)) else "pending"


@dataclass
class GroupStatus:
    name: str
    done: int
    running: int
    pending: int
    seconds_per_run: float | None  # mean wall time of its complete runs

    @property
    def total(self) -> int:
        return self.done + self.running + self.pending


def plan_status(plan: str, out: str | Path = ".", group: str | None = None,
                assignments: Sequence[str] = ()) -> list[GroupStatus]:
    """One ``GroupStatus`` per group (teachers first) of plan ``plan`` under ``out``
    (``assignments``: the ``--set`` variant of ``group``, see ``plan_groups``)."""
    groups = plan_groups(plan, group, assignments)
    rows: dict[str, dict] = {}
    for spec in plan_specs(groups, group):
        row = rows.setdefault(group_of(groups, spec), {"done": 0, "running": 0, "pending": 0, "times": []})
        state = run_state(spec, out)
        row[state] += 1
        if state == "done":
            row["times"].append(load_run_record(spec_record_path(out, spec)).wall_time_s)
    return [GroupStatus(name, r["done"], r["running"], r["pending"], sum(r["times"]) / len(r["times"]) if r["times"] else None)
            for name, r in rows.items()]


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_status(plan: str, rows: list[GroupStatus], workers: int, startup_s: float = 0.0,
                  width: int | None = 88) -> str:
    """The table ``plan NAME --status`` prints, with the projected time left on ``workers`` workers.

    Each run left takes its group's measured time per run (records count only the epochs) plus
    ``startup_s``, a worker process's start-up (interpreter, imports). A group without a finished
    run is projected at the mean time of the other groups' students.
    The closing summary is wrapped to ``width`` columns at its ``"; "`` (None: one line); the
    table is 58 columns wide (more only for a group name over 14 characters).
    """
    students = [r.seconds_per_run for r in rows if r.seconds_per_run is not None and r.name != "teachers"]
    measured = students or [r.seconds_per_run for r in rows if r.seconds_per_run is not None]
    fallback = sum(measured) / len(measured) if measured else None
    lines = [f"{'group':<14}{'done':>6}{'running':>9}{'pending':>9}{'min/run':>9}{'time left':>11}"]
    total_left = 0.0
    for r in rows:
        per_run = r.seconds_per_run or fallback
        left = (r.pending + r.running) * (per_run + startup_s) / workers if per_run else None
        total_left += left or 0.0
        lines.append(f"{r.name:<14}{r.done:>6}{r.running:>9}{r.pending:>9}"
                     f"{'-' if r.seconds_per_run is None else f'{r.seconds_per_run / 60:.1f}':>9}"
                     f"{'-' if left is None else duration(left):>11}")
    done, total = sum(r.done for r in rows), sum(r.total for r in rows)
    startup = f" and {startup_s:.0f} s of start-up" if startup_s else ""
    left = (f"about {duration(total_left)} left on {workers} worker(s), from the measured time per run{startup}"
            if fallback else "time left unknown until a run has finished")
    lines.append(wrap_fields([f"plan {plan}: {done}/{total} runs done, {sum(r.running for r in rows)} running", left],
                             width))
    return "\n".join(lines)


def variant_arguments(group: str | None, assignments: Sequence[str]) -> list[str]:
    """The ``--group G --set K=V`` a worker needs to see the same plan variant as its runner."""
    if not assignments:
        return []
    return ["--group", str(group)] + [part for item in assignments for part in ("--set", item)]


def worker_command(plan: str, out: Path, how: RunOptions, variant: list[str]) -> Callable[[int], list[str]]:
    """The command line of the worker that trains run ``index`` of ``plan``, as a function of ``index``."""
    options = variant + (["--device", how.device] if how.device else []) + (["--fast"] if how.fast else [])

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "icd_lib", "plan", plan, "--index", str(index), "--out", str(out), "--quiet",
                *options]

    return command


def list_commands(plan: str, out: str | Path = ".", group: str | None = None,
                  assignments: Sequence[str] = ()) -> list[str]:
    """One shell command per pending run (for GNU parallel, a SLURM array or any scheduler)."""
    groups = plan_groups(plan, group, assignments)
    specs = plan_specs(groups)
    chosen = {s.name for s in plan_specs(groups, group)}
    out = Path(out)
    variant = variant_arguments(group, assignments)
    return [shlex.join(["python", "-m", "icd_lib", "plan", plan, "--index", str(i), "--out", str(out), *variant])
            for i, spec in enumerate(specs) if spec.name in chosen and run_state(spec, out) != "done"]


def default_workers(device: str | None) -> int:
    """Workers per machine: one single-threaded worker per core on the CPU, 4 runs at once on a GPU."""
    return 4 if device and device.startswith("cuda") else max(1, os.cpu_count() or 1)


def repository_root() -> Path | None:
    """The git checkout this icd_lib is imported from, or None (installed as a package)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / ".git").exists() and (root / "pyproject.toml").is_file() else None


def prepare_worktree(root: Path) -> tuple[Path, str]:
    """A worktree of ``root`` at its ``HEAD`` commit under ``root/.worktrees/`` (created once); (path, commit)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--", "icd_lib"):
        print(f"note: icd_lib has uncommitted changes; the runs use the committed revision {commit[:12]}", file=sys.stderr)
    path = root / ".worktrees" / commit[:12]
    if not (path / "icd_lib").is_dir():
        git("worktree", "prune")
        git("worktree", "add", "--detach", "--force", str(path), commit)
    return path, commit


@dataclass
class Worker:
    spec: RunSpec
    process: subprocess.Popen
    log: Path


def run_plan(plan: str, how: RunOptions, group: str | None = None, workers: int | None = None,
             use_worktree: bool = True, assignments: Sequence[str] = ()) -> list[str]:
    """Run every pending run of ``plan`` (or of ``group``, or of its ``--set`` variant) under
    ``how.out`` on ``how.device`` (``how.fast``, ``how.progress``); return the names that failed."""
    out = how.out.resolve()
    groups = plan_groups(plan, group, assignments)
    specs = plan_specs(groups)
    chosen = {s.name for s in plan_specs(groups, group)}
    todo = [(i, s) for i, s in enumerate(specs) if s.name in chosen and not is_complete(s, out)]
    workers = workers or default_workers(how.device)
    code_dir, env = worker_environment(use_worktree, how.device, workers)
    command = worker_command(plan, out, how, variant_arguments(group, assignments))

    def start(index: int, spec: RunSpec, log: Path) -> Worker:
        with open(log, "a") as handle:
            process = subprocess.Popen(command(index), cwd=code_dir, env=env, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return Worker(spec, process, log)

    (out / "logs").mkdir(parents=True, exist_ok=True)
    state = PlanState(specs, todo)
    # smoothing=0: the time per run is the mean since the start; tqdm's moving average would take
    # it from the 2-second polls between completions and promise seconds for hours of work.
    bar = tqdm(total=len(todo), desc=f"plan {plan}", unit="run", disable=not how.progress, dynamic_ncols=True,
               smoothing=0)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        while state.todo or state.running:
            for worker in [w for w in state.running if w.process.poll() is not None]:
                bar.update(state.finished(worker, out))
            launched = launch_ready(state.todo, state.running, workers, start, out, state.failed)
            bar.set_postfix_str(f"{len(state.running)} running")
            if not launched:
                time.sleep(POLL_S)
                bar.update(done_elsewhere(state.todo, out))
    finally:
        signal.signal(signal.SIGTERM, previous)
        for worker in state.running:
            worker.process.terminate()  # the run resumes from its last epoch next time
        bar.close()
    return state.failed


@dataclass
class PlanState:
    """Where a plan's run stands: the runs to start, those running, those that failed and why."""

    specs: list[RunSpec]
    todo: list[tuple[int, RunSpec]]
    running: list[Worker] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # each failed run's error, its own name left out

    def finished(self, worker: Worker, out: Path) -> int:
        """Account for a worker that exited: 1 if its run is now done or failed, 0 if it goes back
        into ``todo`` (another process held it). Too many failures for one reason empty ``todo``."""
        self.running.remove(worker)
        code = worker.process.returncode
        if code == EXIT_BUSY:
            self.todo.append(next((i, s) for i, s in enumerate(self.specs) if s == worker.spec))
            return 0
        if code == 0 and is_complete(worker.spec, out):
            return 1
        self.failed.append(worker.spec.name)
        self.reasons.append(failure_reason(worker))
        tqdm.write(f"failed: {worker.spec.name} (exit {code}); see {worker.log}")
        cause = shared_cause(self.reasons)
        if self.todo and cause:
            tqdm.write(f"stopping the plan: the last {SHARED_CAUSE_RUNS} runs failed for the same "
                       f"reason, which the other runs would meet too: {cause}")
            self.todo.clear()
        return 1


def failure_reason(worker: Worker) -> str:
    """The last line a failed run wrote to its log (its one-line error), with its name left out."""
    try:
        lines = [line.strip() for line in worker.log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1].replace(worker.spec.name, "<run>") if lines else "(it wrote nothing to its log)"


def shared_cause(reasons: Sequence[str], runs: int = SHARED_CAUSE_RUNS) -> str | None:
    """The reason the last ``runs`` failures share, or None."""
    last = reasons[-runs:]
    return last[0] if len(last) == runs and len(set(last)) == 1 else None


def worker_environment(use_worktree: bool, device: str | None, workers: int) -> tuple[Path | None, dict]:
    """(folder the workers run in, their environment): the worktree, one thread per CPU worker,
    and the data folder of this checkout (so the worktree does not fetch the data again)."""
    from icd_lib.data import data_root

    env = {**os.environ, "ICD_DATA": str(data_root()), "OMP_WAIT_POLICY": "PASSIVE"}
    if not (device and device.startswith("cuda")):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    root = repository_root()
    if not use_worktree or root is None:
        return None, env
    path, _ = prepare_worktree(root)
    env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return path, env


def launch_ready(todo: list, running: list[Worker], workers: int, start: Callable[[int, RunSpec, Path], Worker],
                 out: Path, failed: list[str]) -> bool:
    """Start runs whose teacher is complete until ``workers`` run; True if any started."""
    launched = False
    busy = {w.spec.name for w in running}
    for index, spec in list(todo):
        if len(running) >= workers:
            break
        teacher = spec.teacher_spec()
        if teacher is not None and not is_complete(teacher, out):
            if teacher.name in failed:
                todo.remove((index, spec))
                failed.append(spec.name)
            continue
        if spec.name in busy or is_locked(checkpoint_dir(out, spec.name)):
            continue
        todo.remove((index, spec))
        if is_complete(spec, out):
            continue
        running.append(start(index, spec, out / "logs" / f"{spec.name}.log"))
        launched = True
    return launched


def done_elsewhere(todo: list, out: Path) -> int:
    """Drop the runs another runner completed meanwhile; return how many."""
    finished = [(i, s) for i, s in todo if is_complete(s, out)]
    for item in finished:
        todo.remove(item)
    return len(finished)


def reevaluate_plan(plan: str, out: str | Path = ".", group: str | None = None, progress: bool = True) -> list[str]:
    """Measure the final evaluation again for every complete run of ``plan`` whose ``last.pt`` is
    here (after ``icd_lib.eval.final`` has learned a new measurement); no training. Returns the
    names of the complete runs that could not be re-measured (no checkpoint in this checkout)."""
    from icd_lib.experiments.lock import RunLock
    from icd_lib.experiments.runs import add_final_evaluation, load_test_set

    skipped = []
    specs = [s for s in plan_specs(plan_groups(plan), group) if is_complete(s, out)]
    for spec in tqdm(specs, desc=f"re-evaluating plan {plan}", unit="run", disable=not progress):
        if not (checkpoint_dir(out, spec.name) / "last.pt").is_file():
            skipped.append(spec.name)
            continue
        with RunLock(checkpoint_dir(out, spec.name)):
            record = load_run_record(spec_record_path(out, spec))
            add_final_evaluation(spec, record, None, load_test_set(spec), RunOptions(out=Path(out)))
    return skipped
