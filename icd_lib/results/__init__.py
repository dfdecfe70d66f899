"""Run records under ``results/``; what the chapters compute from them (``summary``: rows per
experiment and differences; ``report``: comparisons with verdicts, Holm, glue and tables).

``summary`` and ``report`` load scipy and pandas, so they are imported on first use of one of
their names here: a training process that writes records does not pay for them."""
from importlib import import_module

from icd_lib.results.records import (
    RunRecord,
    aggregate,
    load_record,
    load_records,
    provenance,
    record_path,
    save_record,
)

_LAZY = {
    "summary": ("compare_to", "difference_interval", "experiment_rows", "provenance_line"),
    "report": ("Comparison", "claim_status", "compare", "comparison_table", "experiment_table", "glue_comparison",
               "holm", "timing_frame", "verdict_word", "versus"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["RunRecord", "aggregate", "load_record", "load_records", "provenance", "record_path", "save_record",
           *_MODULE_OF]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'icd_lib.results' has no attribute {name!r}")
    return getattr(import_module(f"icd_lib.results.{_MODULE_OF[name]}"), name)
