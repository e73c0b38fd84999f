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


@dataclass
class RunForecast:
    """The forecast of one run: quantiles of the metric at each horizon step, or why it was skipped."""

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

    @property
    def final(self) -> float | None:
        return float(self.p50[-1]) if len(self.p50) else None

    @property
    def final_interval(self) -> tuple[float, float] | None:
        return (float(self.p10[-1]), float(self.p90[-1])) if len(self.p50) else None

    @classmethod
    def skip(cls, run: str, group: str, reason: str, metric: str = "loss") -> "RunForecast":
        empty = np.zeros(0)
        return cls(run, group, np.zeros(0, dtype=np.int64), empty, empty, empty, empty,
                   skipped=reason, metric=metric)
