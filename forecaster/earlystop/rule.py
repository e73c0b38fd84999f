"""The forecast stop rule, shaped like an Optuna pruner: settings in the constructor, one decision method.

A run is stopped when P(final < best finished run * (1 + margin)) < delta (docs/laws.md §3,
stopping runs; the margin is the one the false-stop rate counts). The probability is the larger of
two calibrated predictives (`forecaster.calibration`): the group-wide standardised errors and the
errors of the siblings forecast nearest to this run, so a stop needs both to agree (late bloomers
hide among the nearest). No run is stopped before `min_calibration` finished runs exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from forecaster.calibration import local_prob_below, log_scale, prob_final_below
from forecaster.histories import RunForecast

if TYPE_CHECKING:
    from forecaster.earlystop.settings import EarlyStopSettings


@dataclass
class Evidence:
    """What a group's finished runs say about the forecasts made at one checkpoint with one law."""

    residuals: list[float] = field(default_factory=list)  # standardised log errors (group-wide)
    pairs: list[tuple[float, float]] = field(default_factory=list)  # (log forecast, log outcome) (local)

    def add(self, forecast: RunForecast, outcome: float) -> None:
        """Record a finished run's outcome against the forecast made for it at this checkpoint."""
        self.residuals.append((math.log(outcome) - math.log(forecast.final)) / log_scale(forecast))
        self.pairs.append((math.log(forecast.final), math.log(outcome)))

    def standardised(self) -> np.ndarray:
        return np.asarray(self.residuals)

    def near(self) -> np.ndarray:
        """The (log forecast, log outcome) rows the local predictive picks its neighbours from."""
        return np.asarray(self.pairs, dtype=float).reshape(-1, 2)


@dataclass(frozen=True)
class Verdict:
    """The rule's judgement of one run at one checkpoint."""

    prob: float  # P(final < bar), the larger of the two calibrations
    bar: float  # the best finished run's final * (1 + margin)
    stop: bool  # prob < delta


class StopRule:
    """Stop a run whose calibrated P(final < best * (1 + margin)) falls below `delta`."""

    def __init__(self, delta: float = 0.05, margin: float = 0.01, min_calibration: int = 5,
                 neighbours: int = 50) -> None:
        self.delta = delta
        self.margin = margin
        self.min_calibration = min_calibration
        self.neighbours = neighbours

    @classmethod
    def from_settings(cls, s: EarlyStopSettings) -> StopRule:
        return cls(delta=s.delta, margin=s.margin, min_calibration=s.min_calibration, neighbours=s.neighbours)

    def calibrated(self, evidence: Evidence) -> bool:
        """Enough finished runs for the rule to state a probability at all."""
        return len(evidence.residuals) >= self.min_calibration

    def judge(self, forecast: RunForecast, best: float | None, evidence: Evidence) -> Verdict | None:
        """The probability and decision for a run forecast as `forecast`; None when the rule cannot
        judge it yet (no finished run to beat, too little calibration, no finite probability)."""
        if best is None or not self.calibrated(evidence):
            return None
        # "could still end within the margin of the best": what a false stop would lose
        bar = best * (1.0 + self.margin)
        p = max(prob_final_below(forecast, bar, evidence.standardised()),
                local_prob_below(forecast, bar, evidence.near(), self.neighbours))
        if not np.isfinite(p):
            return None
        return Verdict(p, bar, p < self.delta)

    def prune(self, forecast: RunForecast, best: float | None, evidence: Evidence) -> bool:
        """True when the run should be stopped now (as `optuna.pruners.BasePruner.prune`)."""
        v = self.judge(forecast, best, evidence)
        return v is not None and v.stop
