"""LR known at points (logged by the tracker or planned): a `Schedule` interpolated between them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from forecaster.errors import InputError
from forecaster.schedules.families import Schedule
from forecaster.schedules.values import coerce_value, spec_number


@dataclass(frozen=True, kw_only=True)
class Interpolated(Schedule):
    """LR from logged or planned points: piecewise linear between them, then `then` or the last value.

    Before the first point the first value holds. `total` defaults to ``then.total`` (None when
    open-ended: logged points alone do not say when the run will stop).
    """

    name: ClassVar[str] = "points"
    points: tuple[tuple[int, float], ...]
    then: Schedule | None = None
    peak: float = field(default=0.0, init=False)
    warmup: int = field(default=0, init=False)
    until: int | None = field(default=None, init=False)
    start: float = field(default=0.0, init=False)
    warmup_shape: str = field(default="linear", init=False)

    def __post_init__(self) -> None:
        # validated as arrays: logged LR can hold many thousands of points per run
        try:
            arr = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise InputError("points: expected (step, LR) pairs of numbers") from None
        if not len(arr):
            raise InputError("points: needs at least one (step, LR) point")
        xs, ys = arr[:, 0], arr[:, 1]
        if not np.all(np.isfinite(xs)) or not np.all(xs == np.round(xs)):
            raise InputError("points: steps must be whole optimizer steps")
        if np.any(np.diff(xs) <= 0):
            raise InputError("points: steps must be strictly increasing")
        bad = ~(np.isfinite(ys) & (ys >= 0))
        if bad.any():
            raise InputError(f"points: {int(bad.sum())} LR value(s) negative or not finite, "
                             f"e.g. {ys[bad][0]!r}")
        pts = tuple(zip(xs.astype(np.int64).tolist(), ys.tolist()))
        if self.then is not None and not isinstance(self.then, Schedule):
            raise InputError("points: then= must be a schedule")
        object.__setattr__(self, "points", pts)
        if self.total is None and self.then is not None:
            object.__setattr__(self, "total", self.then.total)
        if self.total is not None:
            object.__setattr__(self, "total", coerce_value(self.total, "int", "total", "points"))
        top = float(ys.max())
        object.__setattr__(self, "peak", max(top, self.then.peak) if self.then is not None else top)
        object.__setattr__(self, "_xs", xs.copy())
        object.__setattr__(self, "_ys", ys.copy())

    @property
    def end(self) -> int | None:
        return None

    def lr(self, steps: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """LR at each step: interpolated inside the points, `then` (or the last value) after them."""
        s = np.asarray(steps, dtype=np.float64)
        out = np.interp(s, self._xs, self._ys)  # type: ignore[attr-defined]
        if self.then is not None:
            out = np.where(s > self._xs[-1], self.then.lr(s), out)  # type: ignore[attr-defined]
        return np.array(out, dtype=np.float64)

    def spec(self) -> str:
        at = ";".join(f"{a}:{spec_number(b)}" for a, b in self.points)
        parts = [f"at={at}"]
        if self.then is not None:
            parts.append(f"then={self.then.spec()}")
        if self.total is not None and (self.then is None or self.total != self.then.total):
            parts.append(f"total={self.total}")
        return f"points({', '.join(parts)})"



def from_points(steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray,
                then: Schedule | None = None, total: int | None = None) -> Interpolated:
    """Schedule from logged/planned (step, LR) points; duplicates keep the last logged value."""
    s = np.asarray(steps)
    v = np.asarray(values, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise InputError(f"LR points: {s.size} steps but {v.size} values")
    if s.size and not np.all(np.isfinite(s.astype(np.float64))):
        raise InputError("LR points: steps must be finite")
    si = np.asarray(s, dtype=np.float64)
    if s.size and not np.all(si == np.round(si)):
        raise InputError("LR points: steps must be whole optimizer steps")
    si = si.astype(np.int64)
    # stable sort, then keep the last occurrence of each step (trackers re-log after resumes)
    order = np.argsort(si, kind="stable")
    si, v = si[order], v[order]
    keep = np.ones(si.size, dtype=bool)
    keep[:-1] = si[1:] != si[:-1]
    return Interpolated(points=np.column_stack([si[keep], v[keep]]), then=then, total=total)
