"""Run records under ``results/`` and their aggregation over seeds for the book's tables."""
from icd_lib.results.records import (
    RunRecord,
    aggregate,
    load_record,
    load_records,
    provenance,
    record_path,
    save_record,
)

__all__ = ["RunRecord", "aggregate", "load_record", "load_records", "provenance", "record_path", "save_record"]
