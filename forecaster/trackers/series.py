"""One metric's history as a tracker returns it, and the thinning used to fit one into a write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Series:
    """One metric's full history: sorted unique steps; NaN/inf kept (the engine counts them)."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


def clean_series(steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray,
                 timestamps: Sequence[int] | np.ndarray | None = None) -> Series:
    """Sort by step and keep one value per step: the last by timestamp (then by arrival) wins."""
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    t = np.zeros(len(s), dtype=np.int64) if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    if not len(s):
        return Series(s, v)
    # lexsort: last key is primary; arrival index breaks timestamp ties so the later write wins
    order = np.lexsort((np.arange(len(s)), t, s))
    s, v = s[order], v[order]
    keep = np.ones(len(s), dtype=bool)
    keep[:-1] = s[1:] != s[:-1]
    return Series(s[keep], v[keep])


def thin(n: int, k: int) -> np.ndarray:
    """Indices of at most `k` of `n` points, first and last included, spaced closer near the first."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round((n - 1) * np.linspace(0.0, 1.0, k) ** 1.5).astype(np.int64))


# a point is left out of a written series only where a straight line through its neighbours kept
# passes within this share of the series' own range: under a pixel on any chart that shows the
# series whole (the chart's height spans at least that range)
DRAWN_TOL = 1e-3


def drawn(steps: np.ndarray, series: list[np.ndarray], most: int) -> np.ndarray:
    """Indices of at most `most` steps at which every one of `series` (sharing `steps`, e.g. a
    forecast and its band edges) is drawn as with all of them (`DRAWN_TOL`): a smooth forecast
    needs a few dozen, a kink (a planned LR decay starting) a few more there. From a sparse
    spread, each round adds the worst-drawn step between every two kept ones, until none is off."""
    n = len(steps)
    ys = np.asarray(series, dtype=np.float64).reshape(len(series), n)
    if n <= 2 or not np.all(np.isfinite(ys)):
        return thin(n, most)
    tol = DRAWN_TOL * np.ptp(ys, axis=1)
    keep = np.zeros(n, dtype=bool)
    keep[thin(n, min(most, 8))] = True
    x = steps.astype(np.float64)
    while (room := most - int(keep.sum())) > 0:
        idx = np.flatnonzero(keep)
        off = np.stack([np.abs(np.interp(x, x[idx], y[idx]) - y) - t for y, t in zip(ys, tol)]).max(0)
        off[keep] = 0.0
        gap = np.searchsorted(idx, np.arange(n), side="right") - 1
        order = np.lexsort((-off, gap))
        first = order[np.r_[True, gap[order][1:] != gap[order][:-1]]]  # each gap's worst step
        worst = first[off[first] > 0]
        if not len(worst):
            break
        keep[worst[np.argsort(-off[worst])][:room]] = True  # the worst first where room runs out
    return np.flatnonzero(keep)
