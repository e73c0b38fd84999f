"""Steps to forecast past a run's rows: its logging interval, and a horizon extended to a later step."""

from __future__ import annotations

import numpy as np

from forecaster.histories import RunHistory, median_interval, steps_until


def logging_interval(h: RunHistory) -> int:
    """The run's median step between logged values (metric rows, else all rows), at least 1."""
    for s in (h.steps, h.meta.get("row_steps", np.zeros(0))):
        if len(s) >= 2:
            return median_interval(s)
    return 1


def extend_horizon(h: RunHistory, until: int) -> np.ndarray:
    """Every k-th step after the last row up to `until` (included), k = the run's logging interval."""
    start = int(h.meta["row_steps"][-1]) if len(h.meta.get("row_steps", ())) else h.last_step
    return steps_until(start, until, logging_interval(h))
