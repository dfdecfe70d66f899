"""The command line, ``python -m icd_lib`` (or ``icd``): thin wrappers around ``icd_lib.experiments``."""
from icd_lib.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
