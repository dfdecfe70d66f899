"""``python -m icd_lib``: see ``python -m icd_lib --help``."""
import sys

from icd_lib.cli.main import main

sys.exit(main())
