"""The records a chapter shows: a plan group's complete runs, made on the spot only where that is cheap.

In the ``smoke`` profile (CI) a chapter trains its group's missing runs in seconds; in ``book``
and ``paper`` it only reads records (the plan runner makes them: ``python -m icd_lib plan book
--run``) and reports which runs are still missing, so a chapter never retrains for hours.

A chapter stops cleanly where its records are missing. Its setup cell (the first with output)
calls :func:`require_groups`, which raises :class:`MissingRecordsError` naming the one command
that makes them and what it costs. Inside IPython, importing this module registers a handler for
that error: the cell's output is the message alone (no traceback), the cell fails (so "Run all"
in Jupyter or Colab, and nbclient, stop there), and in a chapter (a session whose parameters
cell defined ``RECORDS``) every later cell does nothing and shows nothing, even where an
executor runs on past errors (``--allow-errors``), so no output beneath the message can look
fresh. A later cell that names ``RECORDS`` (the parameters and setup cells) still runs; when one
succeeds, the chapter runs normally again.
"""
from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from icd_lib.config import get_profile
from icd_lib.errors import MissingRecordsError
from icd_lib.experiments.plans import get_plan, plan_records, plan_specs
from icd_lib.experiments.runs import execute, is_complete
from icd_lib.experiments.spec import RunSpec
from icd_lib.results.records import RunRecord
from icd_lib.utils import wrap_fields

CHEAP_PROFILES = ("smoke",)
# The two comparisons the chapters show, like the paper's Tables 1 and 2: per plan, the group and
# the (teacher, student) pair to cut it to (None: the group holds one pair; the key None: every
# other plan). The paper plan's tables hold many pairs; the chapters show one of each.
COMPARISONS = {
    "A": {None: ("comparison-a", None), "paper": ("table-1", ("wrn_40_2", "wrn_16_2"))},
    "B": {None: ("comparison-b", None), "paper": ("table-2", ("vgg13", "mobilenetv2"))},
}


RESUME_MARK = "RECORDS"  # a cell naming it (parameters, setup) runs after a stop


class ChapterStop:
    """The IPython side of a stopped chapter: the message as the cell's one error output, then
    every later cell skipped (an input transformer that empties it) until a cell naming
    ``RECORDS`` succeeds. Registered once per shell by :func:`register_chapter_stop`."""

    def __init__(self, shell):
        self.shell = shell
        self.stopped = False
        self.resuming = False

    def show(self, shell, etype, value, tb, tb_offset=None) -> list[str]:
        """``set_custom_exc``'s handler: stop, and show the message as the cell's error output,
        its whole traceback (wrapped to 88 columns, a `command` kept on one line); the cell still fails.
        Later cells are skipped only in a chapter (its parameters cell defines ``RECORDS``)."""
        self.stopped = RESUME_MARK in shell.user_ns
        text = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), f"{etype.__name__}: {value}")
        stb = [textwrap.fill(text, 88, break_on_hyphens=False, break_long_words=False).replace("\0", " ")]
        shell._showtraceback(etype, value, stb)  # IPython ignores what the handler returns
        return stb

    def skip(self, lines: list[str]) -> list[str]:
        """An input transformer: a cell after the stop becomes empty, unless it names ``RECORDS``."""
        self.resuming = self.stopped and any(RESUME_MARK in line for line in lines)
        return [] if self.stopped and not self.resuming else lines

    def after(self, result) -> None:
        """``post_run_cell``: a ``RECORDS`` cell that succeeds ends the stop."""
        if self.resuming and result.success:
            self.stopped = False
        self.resuming = False


def register_chapter_stop(shell=None) -> ChapterStop | None:
    """Install :class:`ChapterStop` in ``shell`` (default: the running IPython, if any); once."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return None
    stop = getattr(shell, "_icd_chapter_stop", None)
    if stop is None:
        stop = shell._icd_chapter_stop = ChapterStop(shell)
        shell.input_transformers_post.append(stop.skip)
        shell.events.register("post_run_cell", stop.after)
    shell.set_custom_exc((MissingRecordsError,), stop.show)
    return stop


def comparison_group(key: str, profile: str | None = None) -> str:
    """The plan group comparison ``key`` ("A" or "B") reads in the plan named after ``profile``."""
    if key not in COMPARISONS:
        raise ValueError(f"unknown comparison {key!r}; the chapters show {', '.join(COMPARISONS)}")
    plan = get_profile(profile).name
    return COMPARISONS[key].get(plan, COMPARISONS[key][None])[0]


def require_groups(groups: Sequence[str], profile: str | None = None, out: str | Path = ".",
                   train_missing: bool | None = None, device: str | None = None) -> None:
    """Nothing, where each of ``groups`` of the plan named after ``profile`` has a record under
    ``out`` or will be trained by the chapter (``train_missing``, default: the smoke profile);
    else MissingRecordsError: which groups, the one command that makes them, and its cost (runs,
    and the time measured from records of this profile on this device, or the epochs and
    images of an unmeasured run)."""
    from icd_lib.runtime import estimate

    plan = get_profile(profile).name
    if train_missing if train_missing is not None else plan in CHEAP_PROFILES:
        return
    empty = [g for g in groups if not plan_records(plan, g, out)[0]]
    if not empty:
        return
    if len(empty) == 1:
        command = f"python -m icd_lib plan {plan} --run --group {empty[0]}"
        todo = plan_specs(get_plan(plan), empty[0])
    else:
        command = f"python -m icd_lib plan {plan} --run"
        todo = plan_specs(get_plan(plan))
    todo = [spec for spec in todo if not is_complete(spec, out)]
    named = ", ".join(empty)
    raise MissingRecordsError(
        f"this chapter needs records of plan {plan}, group{'s' if len(empty) > 1 else ''} {named}, and "
        f"{Path(out).resolve()} has none. Make them with `{command}`: "
        f"{estimate(todo, out, device)}. Then run the chapter again (or set RECORDS to a folder holding "
        f"them).")


@dataclass
class GroupRecords:
    plan: str
    group: str
    records: list[RunRecord]
    missing: list[str]
    pair: tuple[str, str] | None = None  # (teacher, student) when cut to one pair (``on_pair``)

    def where(self) -> str:
        """"plan P, group G", with the pair where the group is cut to one."""
        return f"plan {self.plan}, group {self.group}" + (f" ({' -> '.join(self.pair)})" if self.pair else "")

    def status(self, width: int | None = 88) -> str:
        """How many of the group's runs have records (and what to run for the rest), wrapped to
        ``width`` columns at the ``"; "`` (``icd_lib.utils.wrap_fields``; None: one line)."""
        done, total = len(self.records), len(self.records) + len(self.missing)
        if not self.missing:
            return wrap_fields([f"{self.where()}: all {total} runs recorded"], width)
        return wrap_fields([f"{self.where()}: {done} of {total} runs recorded",
                            f"the rest come from `python -m icd_lib plan {self.plan} --run --group {self.group}`"],
                           width)

    def require(self) -> "GroupRecords":
        """``self``, or ``MissingRecordsError`` when the group has no record at all."""
        if not self.records:
            raise MissingRecordsError(
                f"{self.where()} has no records yet: run `python -m icd_lib plan {self.plan} --run --group "
                f"{self.group}` (add --device cuda --fast on a GPU), then run this chapter again")
        return self

    def on_pair(self, teacher: str, student: str) -> "GroupRecords":
        """Only the runs of ``student`` distilled from ``teacher``, and the plain ``student``s.

        A ValueError when the group has no run of that pair, recorded or missing."""
        runs = [(r.teacher, r.model) for r in self.records]
        runs += [(spec.teacher, spec.model) for spec in map(RunSpec.from_name, self.missing)]
        if (teacher, student) not in runs:
            pairs = sorted({f"{t} -> {s}" for t, s in runs if t is not None})
            raise ValueError(f"{self.where()} has no runs of {student} distilled from {teacher}; "
                             f"its pairs: {', '.join(pairs) or 'none'}")

        def keep(teacher_arch: str | None, student_arch: str) -> bool:
            return student_arch == student and teacher_arch in (None, teacher)

        return replace(self, pair=(teacher, student),
                       records=[r for r in self.records if keep(r.teacher, r.model)],
                       missing=[n for n, run in zip(self.missing, runs[len(self.records):]) if keep(*run)])


def comparison_records(key: str, profile: str | None = None, out: str | Path = ".",
                       train_missing: bool | None = None) -> GroupRecords:
    """The records of comparison ``key`` ("A" or "B") in the plan named after ``profile``: its
    group (``COMPARISONS``), cut to one teacher-student pair where the group holds several."""
    if key not in COMPARISONS:
        raise ValueError(f"unknown comparison {key!r}; the chapters show {', '.join(COMPARISONS)}")
    plan = get_profile(profile).name
    group, pair = COMPARISONS[key].get(plan, COMPARISONS[key][None])
    records = group_records(group, plan, out, train_missing)
    return records if pair is None else records.on_pair(*pair)


def group_records(group: str, profile: str | None = None, out: str | Path = ".",
                  train_missing: bool | None = None) -> GroupRecords:
    """The records of ``group`` in the plan named after ``profile`` (default: ``$ICD_PROFILE``).

    ``train_missing`` (default: only in the smoke profile) runs the group's missing runs first.
    """
    plan = get_profile(profile).name
    if train_missing if train_missing is not None else plan in CHEAP_PROFILES:
        todo = [spec for spec in plan_specs(get_plan(plan), group) if not is_complete(spec, out)]
        if todo:
            from tqdm.auto import tqdm

            from icd_lib.runtime import estimate

            print(f"training group {group}: {estimate(todo, out)}")
            for spec in tqdm(todo, desc=f"group {group}", unit="run"):
                execute(spec, out)  # the run's own progress bar shows its batches
    records, missing = plan_records(plan, group, out)
    return GroupRecords(plan, group, records, missing)


register_chapter_stop()
