"""Screening of runs before a pooled fit: one bad run must never sink or drag its group.

Two checks, both pure. `screen_points` cleans one run's series (infinities, stray steps) and says
whether the run diverged; `level_outliers` finds runs whose metric sits far off their siblings'
at the same steps (a summed instead of averaged loss, a perplexity logged under the loss's name),
which are then fitted on their own instead of pooled. Nothing is dropped silently: every removed
point is counted, and the caller reports the counts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from forecaster.histories import RunHistory

# MLflow stores +-inf as +-1.797e308; a value this large was an infinity, not a measurement
OVERFLOW = 1e300
# a step this many times beyond the run's planned end (or the bulk of its steps) is a stray write:
# kept, it would size the per-step LR arrays (a step of 1e12 asks for terabytes)
STEP_SLACK = 10.0
# planned ends beyond this are declined: the features hold the LR at every step up to the end
MAX_STEPS = 10_000_000
# a run whose metric sits this many times above or below its siblings' at the same steps is not
# pooled with them; siblings that differ in size, LR or schedule stay well within 2x
LEVEL_RATIO = 3.0
_GRID = 32  # matched steps per group for the level check


@dataclass
class Points:
    """A series after screening: what is kept, what was dropped (by cause), where it diverged."""

    steps: np.ndarray
    values: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    nonfinite_steps: list[int] = field(default_factory=list)
    diverged_at: int | None = None  # first step of a non-finite tail (the run ends in NaN/inf)


def step_limit(steps: np.ndarray, planned_end: int | None) -> float:
    """The largest plausible step of a series: STEP_SLACK x its planned end, or x twice its median
    step (about its last step when logged at a steady interval; a median no stray can move)."""
    if not len(steps):
        return float("inf")
    return STEP_SLACK * max(float(planned_end or 0), 2.0 * float(np.median(steps)), 1.0)


def screen_points(steps: np.ndarray, values: np.ndarray, planned_end: int | None = None) -> Points:
    """Drop stray steps (negative, or far beyond the planned end) and non-finite values (counted);
    a series whose last points are all non-finite diverged there."""
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    dropped: dict[str, int] = {}
    stray = (s < 0) | (s > step_limit(s[s >= 0], planned_end))
    if stray.any():
        dropped["stray steps"] = int(stray.sum())
        s, v = s[~stray], v[~stray]
    bad = ~np.isfinite(v) | (np.abs(v) >= OVERFLOW)
    out = Points(s[~bad], v[~bad], dropped)
    if bad.any():
        dropped["non-finite"] = int(bad.sum())
        out.nonfinite_steps = s[bad].tolist()
        tail = len(bad) - int(np.argmax(~bad[::-1])) if (~bad).any() else 0
        if bad[-1]:
            out.diverged_at = int(s[tail])
    return out


def describe_dropped(dropped: dict[str, int]) -> str:
    """'3 points dropped (non-finite 2, stray steps 1)', or '' when none."""
    n = sum(dropped.values())
    if not n:
        return ""
    parts = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
    return f"{n} point{'s' if n != 1 else ''} dropped ({parts})"


def level_outliers(histories: list[RunHistory], ratio: float = LEVEL_RATIO) -> dict[int, float]:
    """Runs (index -> factor off their siblings) whose metric is `ratio` or more off their group's
    median at the same steps. Groups of one are never flagged; two runs that disagree are both
    flagged (neither can be told to be the right one)."""
    by_group: dict[str, list[int]] = {}
    for i, h in enumerate(histories):
        if len(h.steps) and np.all(h.values > 0):
            by_group.setdefault(h.group, []).append(i)
    out: dict[int, float] = {}
    for idx in by_group.values():
        if len(idx) < 2:
            continue
        lo = max(1.0, min(float(histories[i].steps[0]) for i in idx))
        hi = max(float(histories[i].steps[-1]) for i in idx)
        grid = np.geomspace(lo, max(hi, lo + 1.0), _GRID)
        logs = np.full((len(idx), _GRID), np.nan)
        for k, i in enumerate(idx):  # one interpolation per run of a screened group, small next to the fit
            h = histories[i]
            inside = (grid >= h.steps[0]) & (grid <= h.steps[-1])
            logs[k, inside] = np.interp(np.log(grid[inside]), np.log(np.maximum(h.steps, 1)), np.log(h.values))
        seen = ~np.isnan(logs)
        covered = seen.sum(axis=0)
        # a median needs three runs to out-vote one; with two, their ratio is the evidence
        need = 3 if (covered >= 3).any() else 2
        cols = covered >= need
        if not cols.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(logs[:, cols], axis=0)
            dev = logs[:, cols] - ref
            if need == 2:
                dev = dev * 2.0  # median of two is their mean: each sits half the gap away
            level = np.nanmedian(dev, axis=1)
        for k, i in enumerate(idx):
            if np.isfinite(level[k]) and abs(level[k]) >= np.log(ratio):
                out[i] = float(np.exp(level[k]))
    return out
