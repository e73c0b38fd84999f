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
