"""The data that crosses modules: a run's observed history in, a run's forecast out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.schedules import Schedule


@dataclass
class RunHistory:
    """One run's observed metric plus what is known of its learning-rate schedule.

    ``steps``/``values`` are the observed metric (sorted, unique, finite). The LR is known from
    ``lr_steps``/``lr_values`` (logged or planned points, interpolated in between) and/or from a
    planned ``schedule``; points win where both exist. ``horizon`` lists the steps to forecast.
    """

    run: str
    steps: np.ndarray
    values: np.ndarray
    group: str = ""
    lr_steps: np.ndarray | None = None
    lr_values: np.ndarray | None = None
    schedule: "Schedule | None" = None
    horizon: np.ndarray | None = None
    size: float | None = None
    metric: str = "loss"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.lr_steps is not None:
            self.lr_steps = np.asarray(self.lr_steps, dtype=np.int64)
            self.lr_values = np.asarray(self.lr_values, dtype=np.float64)
        if self.horizon is not None:
            self.horizon = np.asarray(self.horizon, dtype=np.int64)

    @property
    def has_lr(self) -> bool:
        """True when some LR information (points or a schedule) exists."""
        return self.schedule is not None or (self.lr_steps is not None and len(self.lr_steps) > 0)

    @property
    def last_step(self) -> int:
        return int(self.steps[-1]) if len(self.steps) else 0


def median_interval(steps: np.ndarray) -> int:
    """The median step between consecutive `steps` (a run's logging interval), at least 1."""
    return max(1, int(np.median(np.diff(steps)))) if len(steps) > 1 else 1


def steps_until(last: int, total: int, every: int) -> np.ndarray:
    """Every `every`-th step after `last` up to `total`, which is always included: a forecast's
    horizon. Empty when `total` is not after `last`."""
    if total <= last:
        return np.zeros(0, dtype=np.int64)
    return np.append(np.arange(last + every, total, every, dtype=np.int64), np.int64(total))


def planned_end(h: RunHistory) -> int:
    """The run's last known step: its last horizon row, else its last observed step."""
    last = int(h.steps[-1]) if len(h.steps) else 0
    return max(last, int(h.horizon[-1])) if h.horizon is not None and len(h.horizon) else last


# the levels of the band every forecast carries: ``p10``, ``p50`` (the point forecast) and ``p90``
BAND_LEVELS = (0.1, 0.5, 0.9)


def level_key(level: float) -> float:
    """A quantile level as a dictionary key: 0.05 and 0.05000000001 are the same level."""
    return round(float(level), 9)


def quantile_name(level: float) -> str:
    """The column name of a quantile level: 0.1 -> ``p10``, 0.05 -> ``p5``, 0.025 -> ``p2.5``."""
    return f"p{100 * level:g}"


# how a band whose annealing response the data cannot identify opens its note (`bands`); what reads
# the note (the advisor, the alerts, the sync's tags) finds it by this
UNIDENTIFIED_NOTE = "annealing response not identifiable"


@dataclass
class RunForecast:
    """The forecast of one run: quantiles of the metric at each horizon step, or why it was skipped.

    ``p10``/``p50``/``p90`` are always the 10 %, 50 % and 90 % quantiles (the band the CSV, the
    trackers and the alerts use). Other levels asked for (``Forecaster(quantiles=...)``) are in
    ``extra_quantiles``; `quantile(level)` and `quantiles` read any of them by level.
    """

    run: str
    group: str
    steps: np.ndarray
    lr: np.ndarray
    p50: np.ndarray
    p10: np.ndarray
    p90: np.ndarray
    law: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    metric: str = "loss"
    # samples of the final value (for probabilities such as P(final < best)); may be None
    final_samples: np.ndarray | None = None
    # quantiles at the requested levels other than BAND_LEVELS, keyed by `level_key(level)`
    extra_quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    levels: tuple[float, ...] = BAND_LEVELS  # the levels asked for, ascending

    def quantile(self, level: float) -> np.ndarray:
        """The forecast's quantile at `level` for each horizon step; KeyError when that level was
        not computed (it is one of the band's, or one asked for with ``Forecaster(quantiles=...)``)."""
        key = level_key(level)
        band = dict(zip(BAND_LEVELS, (self.p10, self.p50, self.p90)))
        if key in band:
            return band[key]
        if key in self.extra_quantiles:
            return self.extra_quantiles[key]
        have = sorted(set(BAND_LEVELS) | set(self.extra_quantiles))
        raise KeyError(f"quantile {level:g} was not computed for run {self.run!r}; levels: "
                       f"{', '.join(f'{lv:g}' for lv in have)} (ask with Forecaster(quantiles=...))")

    @property
    def quantiles(self) -> dict[float, np.ndarray]:
        """The requested quantiles by level."""
        return {level: self.quantile(level) for level in self.levels}

    @property
    def final(self) -> float | None:
        return float(self.p50[-1]) if len(self.p50) else None

    @property
    def final_interval(self) -> tuple[float, float] | None:
        return (float(self.p10[-1]), float(self.p90[-1])) if len(self.p50) else None

    @property
    def unidentified(self) -> str | None:
        """The note saying the band spans a range of annealing gains the data cannot pin down, if any."""
        return next((n for n in self.notes if n.startswith(UNIDENTIFIED_NOTE)), None)

    @classmethod
    def skip(cls, run: str, group: str, reason: str, metric: str = "loss") -> "RunForecast":
        empty = np.zeros(0)
        return cls(run, group, np.zeros(0, dtype=np.int64), empty, empty, empty, empty,
                   skipped=reason, metric=metric)
