"""The records a chapter shows: a plan group's complete runs, made on the spot only where that is cheap.

In the ``smoke`` profile (CI) a chapter trains its group's missing runs in seconds; in ``book``
and ``paper`` it only reads records (the plan runner makes them: ``python -m icd_lib plan book
--run``) and reports which runs are still missing, so a chapter never retrains for hours.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from icd_lib.config import get_profile
from icd_lib.experiments.plans import get_plan, plan_specs
from icd_lib.experiments.runs import execute, is_complete
from icd_lib.experiments.spec import RunSpec
from icd_lib.results.records import RunRecord
from icd_lib.results.summary import plan_records
from icd_lib.utils import wrap_fields

CHEAP_PROFILES = ("smoke",)
# The two comparisons the chapters show, like the paper's Tables 1 and 2: per plan, the group and
# the (teacher, student) pair to cut it to (None: the group holds one pair; the key None: every
# other plan). The paper plan's tables hold many pairs; the chapters show one of each.
COMPARISONS = {
    "A": {None: ("comparison-a", None), "paper": ("table-1", ("wrn_40_2", "wrn_16_2"))},
    "B": {None: ("comparison-b", None), "paper": ("table-2", ("vgg13", "mobilenetv2"))},
}


class MissingRecordsError(RuntimeError):
    """A chapter needs records that the plan runner has not made yet."""


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
        runs = [(r.teacher, r.student) for r in self.records]
        runs += [(spec.teacher, spec.student) for spec in map(RunSpec.from_name, self.missing)]
        if (teacher, student) not in runs:
            pairs = sorted({f"{t} -> {s}" for t, s in runs if t is not None})
            raise ValueError(f"{self.where()} has no runs of {student} distilled from {teacher}; "
                             f"its pairs: {', '.join(pairs) or 'none'}")

        def keep(teacher_arch: str | None, student_arch: str) -> bool:
            return student_arch == student and teacher_arch in (None, teacher)

        return replace(self, pair=(teacher, student),
                       records=[r for r in self.records if keep(r.teacher, r.student)],
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
        for spec in plan_specs(get_plan(plan), group):
            if not is_complete(spec, out):
                execute(spec, out, progress=False)
    records, missing = plan_records(plan, group, out)
    return GroupRecords(plan, group, records, missing)
