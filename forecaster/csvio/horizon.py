"""Steps to forecast past a run's rows: its logging interval, and a horizon extended to a later step."""

from __future__ import annotations

import numpy as np

from forecaster.histories import RunHistory


def logging_interval(h: RunHistory) -> int:
    """The run's median step between logged values (metric rows, else all rows), at least 1."""
    for s in (h.steps, h.meta.get("row_steps", np.zeros(0))):
        if len(s) >= 2:
            return max(1, int(np.median(np.diff(s))))
    return 1


def extend_horizon(h: RunHistory, until: int) -> np.ndarray:
    """Every k-th step after the last row up to `until` (included), k = the run's logging interval."""
    start = int(h.meta["row_steps"][-1]) if len(h.meta.get("row_steps", ())) else h.last_step
    k = logging_interval(h)
    if until <= start:
        return np.zeros(0, dtype=np.int64)
    steps = np.arange(start + k, until, k, dtype=np.int64)
    return np.append(steps, np.int64(until))
