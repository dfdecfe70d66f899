"""Experiments as data: a run is a ``RunSpec`` (``spec``), a plan is a checked-in list of them
(``plans``), ``runs.execute`` runs one to completion and ``runner`` fills a plan across
processes and sessions."""
from icd_lib.experiments.spec import RunSpec, SpecError, make_spec, parse_assignments

__all__ = ["RunSpec", "SpecError", "make_spec", "parse_assignments"]
