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
# The two comparisons the chapters show, like the paper's Tables 1 and 2, as (group, teacher,
# student) per plan; a pair of None: the group holds one pair. The paper plan's tables hold
# many pairs; the chapters show the one its text discusses most in each.
COMPARISONS = {
    "A": {"paper": ("table-1", "wrn_40_2", "wrn_16_2")},
    "B": {"paper": ("table-2", "vgg13", "mobilenetv2")},
}
DEFAULT_COMPARISONS = {"A": ("comparison-a", None, None), "B": ("comparison-b", None, None)}


class MissingRecordsError(RuntimeError):
    """A chapter needs records that the plan runner has not made yet."""


@dataclass
class GroupRecords:
    plan: str
    group: str
    records: list[RunRecord]
    missing: list[str]
    pair: tuple[str, str] | None = None  # (teacher, student) when cut to one pair (``on_pair``)

    def status(self, width: int | None = 88) -> str:
        """How many of the group's runs have records (and what to run for the rest), wrapped to
        ``width`` columns at the ``"; "`` (``icd_lib.utils.wrap_fields``; None: one line)."""
        done, total = len(self.records), len(self.records) + len(self.missing)
        where = f"plan {self.plan}, group {self.group}" + (f" ({' -> '.join(self.pair)})" if self.pair else "")
        if not self.missing:
            return wrap_fields([f"{where}: all {total} runs recorded"], width)
        return wrap_fields([f"{where}: {done} of {total} runs recorded",
                            f"the rest come from `python -m icd_lib plan {self.plan} --run --group {self.group}`"],
                           width)


    def require(self) -> "GroupRecords":
        """``self``, or ``MissingRecordsError`` when the group has no record at all."""
        if not self.records:
            where = f"plan {self.plan}, group {self.group}" + (f" ({' -> '.join(self.pair)})" if self.pair else "")
            raise MissingRecordsError(
                f"{where} has no records yet: run `python -m icd_lib plan {self.plan} --run --group "
                f"{self.group}` (add --device cuda --fast on a GPU), then run this chapter again")
        return self

    def on_pair(self, teacher: str, student: str) -> "GroupRecords":
        """Only the runs of ``student`` distilled from ``teacher``, and the plain ``student``s."""
        def keep(student_arch: str, teacher_arch: str | None) -> bool:
            return student_arch == student and teacher_arch in (None, teacher)

        return replace(self, pair=(teacher, student),
                       records=[r for r in self.records if keep(r.student, r.teacher)],
                       missing=[n for n in self.missing if keep(*_pair(RunSpec.from_name(n)))])


def _pair(spec: RunSpec) -> tuple[str, str | None]:
    return spec.student, spec.teacher


def comparison_records(key: str, profile: str | None = None, out: str | Path = ".",
                       train_missing: bool | None = None) -> GroupRecords:
    """The records of comparison ``key`` ("A" or "B") in the plan named after ``profile``: its
    group (``COMPARISONS``), cut to one teacher-student pair where the group holds several."""
    if key not in DEFAULT_COMPARISONS:
        raise ValueError(f"unknown comparison {key!r}; the chapters show {', '.join(DEFAULT_COMPARISONS)}")
    plan = get_profile(profile).name
    group, teacher, student = COMPARISONS[key].get(plan, DEFAULT_COMPARISONS[key])
    records = group_records(group, plan, out, train_missing)
    return records if student is None else records.on_pair(teacher, student)


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
