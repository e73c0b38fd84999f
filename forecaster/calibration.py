"""Calibrated predictive of a run's final value: the forecast's band recalibrated by earlier forecasts' errors.

Two calibrations share one kernel: the group-wide one (`prob_final_below`, `final_quantiles`)
rescales standardised log errors of finished siblings by this forecast's own band; the local one
(`local_prob_below`, `local_quantiles`) takes the raw log errors of the siblings whose forecasts
ended nearest to this one. Both are Gaussian-kernel mixtures and split-conformal: the run is one
more exchangeable draw, so no tail probability falls below 1/(n+1) with n errors, and quantiles
are read at the conformal levels. The alerts and the early-stop rule both state these numbers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from forecaster.histories import RunForecast
from forecaster.stats import TINY, band_log_sd

MIN_RESIDUALS = 3  # fewer standardised errors than this: the forecast's own band (or samples) stands
MIN_SPREAD = 0.3  # floor of the residuals' spread in the group-wide bandwidth (a few alike errors)
MIN_BANDWIDTH = 1e-3  # floor of the local bandwidth, in log: identical errors still give a density
GRID_POINTS = 64  # deterministic draws per kernel when reading quantiles off the mixture


def log_scale(forecast: RunForecast) -> float:
    """Standard deviation of log(final) implied by the final p10/p90 band."""
    return band_log_sd(*forecast.final_interval)


# -- the shared kernel --------------------------------------------------------------------------
def conformal_prob(z: np.ndarray) -> float:
    """P(below) under an equal mixture of kernels, `z` the point's standardised distance to each
    kernel's centre, floored split-conformally at 1/(n+1) with n kernels."""
    n = len(z)
    return float((n * np.mean(norm.cdf(z)) + 1) / (n + 1))


def conformal_levels(qs: np.ndarray, n: int) -> np.ndarray:
    """Split-conformal levels of quantiles `qs` from n draws: (q(n+1)-1)/n below the median, q(n+1)/n above."""
    return np.where(qs < 0.5, (qs * (n + 1) - 1) / n, qs * (n + 1) / n).clip(0.0, 1.0)


def kernel_grid(centres: np.ndarray, bandwidth: float, points: int = GRID_POINTS) -> np.ndarray:
    """The kernel mixture sampled deterministically: `points` normal quantiles around each centre."""
    return (centres[:, None] + bandwidth * norm.ppf((np.arange(points) + 0.5) / points)[None, :]).ravel()


def kernel_quantiles(centres: np.ndarray, bandwidth: float, qs: np.ndarray) -> np.ndarray:
    """Quantiles of the kernel mixture at the split-conformal levels."""
    return np.quantile(kernel_grid(centres, bandwidth), conformal_levels(qs, len(centres)))


# -- group-wide calibration: standardised errors rescaled by the forecast's band ----------------
def _silverman(r: np.ndarray) -> float:
    """Bandwidth of the standardised errors: keeps the tail probability from dropping to exactly 0."""
    return 1.06 * max(np.std(r), MIN_SPREAD) * len(r) ** -0.2


def prob_final_below(forecast: RunForecast, value: float, residuals: np.ndarray | None = None) -> float:
    """P(final metric < value) from the forecast's samples, a log-normal fit to its band, or residuals.

    With ``residuals`` (standardised log errors of comparable earlier forecasts) the predictive is
    log p50 + scale * r for r drawn from them, smoothed by a Gaussian kernel so that a handful of
    residuals still give a continuous probability.
    """
    if forecast.skipped is not None or not len(forecast.p50) or not (value > 0):
        return float("nan")
    lv = math.log(value)
    med = math.log(max(forecast.final, TINY))
    if residuals is not None and len(residuals) >= MIN_RESIDUALS:
        r = np.asarray(residuals, dtype=float)
        s = log_scale(forecast)
        return conformal_prob((lv - med - s * r) / (s * _silverman(r)))
    if forecast.final_samples is not None and len(forecast.final_samples):
        fs = np.asarray(forecast.final_samples, dtype=float)
        fs = fs[np.isfinite(fs)]
        if len(fs):
            return float(np.mean(fs < value))
    return float(norm.cdf((lv - med) / log_scale(forecast)))


def final_quantiles(forecast: RunForecast, qs: np.ndarray, residuals: np.ndarray | None = None) -> np.ndarray:
    """Quantiles of the final value under the same predictive as `prob_final_below`."""
    qs = np.asarray(qs, dtype=float)
    med = math.log(max(forecast.final, TINY))
    s = log_scale(forecast)
    if residuals is not None and len(residuals) >= MIN_RESIDUALS:
        r = np.asarray(residuals, dtype=float)
        return np.exp(med + s * kernel_quantiles(r, _silverman(r), qs))
    if forecast.final_samples is not None and len(forecast.final_samples):
        return np.quantile(np.asarray(forecast.final_samples, dtype=float), qs)
    return np.exp(med + s * norm.ppf(qs))


# -- local calibration: raw errors of the siblings forecast nearest ------------------------------
def local_predictive(log_final: float, cal: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Kernel centres and bandwidth of log final: log forecast + raw log errors of the k nearest siblings.

    ``cal`` rows are (log forecast, log outcome) of earlier finished runs at the same checkpoint.
    Errors of runs forecast to end where this one is forecast to end (e.g. slow starters among
    the bad-looking) replace one group-wide error shape; the kernel bandwidth is Silverman's
    robust rule, so a handful of late bloomers widen the tail without inflating the whole band.
    """
    if len(cal) > k:
        cal = cal[np.argsort(np.abs(cal[:, 0] - log_final), kind="stable")[:k]]
    r = cal[:, 1] - cal[:, 0]
    q75, q25 = np.percentile(r, [75, 25])
    h = 0.9 * min(float(np.std(r)), (q75 - q25) / 1.34) * len(r) ** -0.2
    return log_final + r, max(h, MIN_BANDWIDTH)


def local_prob_below(f: RunForecast, value: float, cal: np.ndarray, k: int) -> float:
    """P(final < value) under the local predictive, split-conformal (never below 1/(n+1))."""
    cen, h = local_predictive(math.log(f.final), cal, k)
    return conformal_prob((math.log(value) - cen) / h)


def local_quantiles(f: RunForecast, qs: list[float], cal: np.ndarray, k: int) -> np.ndarray:
    """Quantiles of the local predictive at the split-conformal levels (as `final_quantiles`)."""
    cen, h = local_predictive(math.log(f.final), cal, k)
    return np.exp(kernel_quantiles(cen, h, np.asarray(qs, dtype=float)))
