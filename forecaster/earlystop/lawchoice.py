"""Which law forecasts a group's runs best at a checkpoint, judged by the finished runs' outcomes.

Under ``law="auto"`` each prefix is forecast with every law auto would consider for it, and each
group and checkpoint uses the law whose calibrated 90 % intervals have scored best (interval
score) on the group's finished runs so far. A lone prefix gives `Forecaster`'s own auto choice
nothing to judge by, while the finished siblings' errors at the same checkpoint do: that is the
evidence a live search has about which law forecasts its runs best that early.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from forecaster.calibration import kernel_grid, local_predictive, local_quantiles
from forecaster.earlystop.settings import EarlyStopSettings
from forecaster.histories import RunForecast, RunHistory

CRPS_POINTS = 16  # deterministic draws per kernel for the CRPS (its pairwise term is quadratic)


def candidate_laws(h: RunHistory, law: str) -> tuple[str, ...]:
    """The laws a run's prefixes are forecast with: the one asked for, or under ``auto`` every law
    `Forecaster(law="auto")` would consider for it (schedule-free without an LR column)."""
    from forecaster import laws
    from forecaster.eligibility import informative_lr

    if law != "auto":
        return (law,)
    names = laws.automatic(needs_lr=informative_lr(h))
    return tuple(sorted(names, key=lambda n: (len(laws.get(n).params), n)))


def interval_score(f: RunForecast, value: float, cal: np.ndarray, k: int, alpha: float = 0.1) -> float:
    """Interval score (Gneiting & Raftery 2007) of the stated (local) 1 - alpha interval, in log:
    its width, plus 2/alpha times how far `value` fell outside it. Lower is better; a proper score,
    so neither a too narrow nor a too wide interval gains, and a miss costs in proportion to its
    distance (a log score under the kernel predictive is decided by single runs far outside it)."""
    lo, hi = np.log(local_quantiles(f, [alpha / 2, 1 - alpha / 2], cal, k))
    y = math.log(value)
    return float(hi - lo + 2 / alpha * (max(lo - y, 0.0) + max(y - hi, 0.0)))


def law_score(f: RunForecast, value: float, cal: np.ndarray, s: EarlyStopSettings) -> float:
    """Penalty (lower is better) of a finished run's outcome under a law's calibrated predictive."""
    if s.law_score == "interval":
        return interval_score(f, value, cal, s.neighbours, s.law_score_alpha)
    cen, h = local_predictive(math.log(f.final), cal, s.neighbours)
    y = math.log(value)
    if s.law_score == "log":
        z = norm.logpdf((y - cen) / h) - math.log(h)
        return -float(np.logaddexp.reduce(z) - math.log(len(z)))
    if s.law_score == "crps":
        # CRPS of the kernel mixture, E|X - y| - E|X - X'|/2, on its deterministic quantiles
        g = kernel_grid(cen, h, CRPS_POINTS)
        return float(np.mean(np.abs(g - y)) - 0.5 * np.mean(np.abs(g[:, None] - g[None, :])))
    raise ValueError(f"unknown law score {s.law_score!r}")


def bounded_from(alpha: float) -> int:
    """Finished runs from which a split-conformal 1 - alpha interval is bounded (its levels stay in
    (0, 1)): 2 / alpha - 1, 19 for the 90 % interval."""
    return int(round(2 / alpha)) - 1


def score_from(s: EarlyStopSettings) -> int:
    """Finished runs scored before the laws are compared (`law_score_from`, else `bounded_from`)."""
    return s.law_score_from if s.law_score_from is not None else bounded_from(s.law_score_alpha)
