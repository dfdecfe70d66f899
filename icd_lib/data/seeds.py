"""Seeds derived from several integers (seed, epoch, split ...), well mixed and reproducible."""
from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part, e.g. ``derive_seed(seed, epoch)``; parts must be >= 0."""
    if any(int(p) < 0 for p in parts):
        raise ValueError(f"seed parts must be non-negative integers, got {parts}")
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))
