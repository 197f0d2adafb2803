"""How many data-loading worker processes to use when none are asked for (no torch: the configs read it)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Data-loading worker processes when none are asked for: one per core this process may use but one (the
    training process's), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))
