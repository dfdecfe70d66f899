"""The records a chapter shows: a plan group's complete runs, made on the spot only where that is cheap.

In the ``smoke`` profile (CI) a chapter trains its group's missing runs in seconds; in ``book``
and ``paper`` it only reads records (the plan runner makes them: ``python -m icd_lib plan book
--run``) and reports which runs are still missing, so a chapter never retrains for hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icd_lib.config import get_profile
from icd_lib.experiments.plans import get_plan, plan_specs
from icd_lib.experiments.runs import execute, is_complete
from icd_lib.results.records import RunRecord
from icd_lib.results.summary import plan_records
from icd_lib.utils import wrap_fields

CHEAP_PROFILES = ("smoke",)


@dataclass
class GroupRecords:
    plan: str
    group: str
    records: list[RunRecord]
    missing: list[str]

    def status(self, width: int | None = 88) -> str:
        """How many of the group's runs have records (and what to run for the rest), wrapped to
        ``width`` columns at the ``"; "`` (``icd_lib.utils.wrap_fields``; None: one line)."""
        done, total = len(self.records), len(self.records) + len(self.missing)
        if not self.missing:
            return wrap_fields([f"plan {self.plan}, group {self.group}: all {total} runs recorded"], width)
        return wrap_fields([f"plan {self.plan}, group {self.group}: {done} of {total} runs recorded",
                            f"the rest come from `python -m icd_lib plan {self.plan} --run --group {self.group}`"],
                           width)


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
