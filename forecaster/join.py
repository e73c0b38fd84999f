"""Where a forecast meets the observed curve: a chart must not show a jump that is only noise.

The law's value at a run's last observed step differs from what was observed there by the run's
noise and by the law's misfit at the end of its data. `join` starts the forecast at the last
observed step, at the level the last points show (a straight line through them in log space),
with a band as narrow as that level is certain, and lets the offset to the law fade over the
span those points cover: the next steps follow the observed level, the far ones the law.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from forecaster.histories import RunForecast, RunHistory
from forecaster.stats import Z90

WINDOW = 0.05  # share of the observed points the level at the join is read from
MIN_WINDOW = 5


def level_at_end(h: RunHistory) -> tuple[float, float, float] | None:
    """(log level at the last step, its standard error, step span of the points it is read from)."""
    n = len(h.steps)
    if n < MIN_WINDOW:
        return None
    k = max(MIN_WINDOW, int(WINDOW * n))
    x = (h.steps[-k:] - h.steps[-1]).astype(float)
    y = np.log(h.values[-k:])
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float(((x - xm) * (y - y.mean())).sum()) / sxx
    level = float(y.mean() - slope * xm)  # the line's value at x = 0, the last step
    resid = y - (level + slope * x)
    sd = float(np.sqrt((resid**2).sum() / max(k - 2, 1)))
    se = sd * float(np.sqrt(1.0 / k + xm**2 / sxx))
    return level, se, float(-x[0])


def join(h: RunHistory, fc: RunForecast) -> RunForecast:
    """`fc` continued from the observed level at `h`'s last step (see the module's docstring)."""
    if fc.skipped is not None or not len(fc.steps) or not len(h.steps) or fc.steps[0] <= h.steps[-1]:
        return fc
    end = level_at_end(h)
    if end is None:
        return fc
    level, se, span = end
    last = int(h.steps[-1])
    lp = np.log(fc.p50)
    # the law at the last observed step: the forecast's first stretch run back to it
    slope = (lp[1] - lp[0]) / float(fc.steps[1] - fc.steps[0]) if len(lp) > 1 else 0.0
    offset = level - (lp[0] - slope * float(fc.steps[0] - last))
    shift = np.exp(offset * np.exp(-(fc.steps - last) / max(span, 1.0)))
    lr0 = np.asarray(fc.lr, dtype=float)[:1] if len(fc.lr) else np.array([np.nan])
    samples = fc.final_samples * shift[-1] if fc.final_samples is not None else None
    return dataclasses.replace(
        fc,
        steps=np.insert(np.asarray(fc.steps, dtype=np.int64), 0, last),
        lr=np.concatenate([lr0, np.asarray(fc.lr, dtype=float)]),
        p50=np.insert(fc.p50 * shift, 0, np.exp(level)),
        p10=np.insert(fc.p10 * shift, 0, np.exp(level - Z90 * se)),
        p90=np.insert(fc.p90 * shift, 0, np.exp(level + Z90 * se)),
        final_samples=samples,
    )
