"""Self-calibrating bands: each group's band scaled by how wrong the same forecast was on its own
finished siblings, cut at the target's share of its run.

A band built from a law's fit (`bands`) is calibrated on average over the data its constants were
set on; on a new kind of run it can be several times too wide or too narrow. A group with finished
siblings can measure that itself: each sibling, cut where the group's targets are cut and forecast
the same way (its group's other runs beside it, one `Forecaster` call for every group's copies),
errs by some multiple of its band's half-width. The group's targets' bands are scaled in log space
around the p50 by the factor that would have made those copies' bands hold 80 % of their horizon
points, shrunk toward 1 when the group has few siblings. Where
`law="auto"` weighed several laws, a run's band is also widened to reach the other laws'
forecasts of its final value (their disagreement), the copies' alike. A group without a finished
sibling keeps the band it had (the global calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from forecaster.histories import RunForecast, RunHistory, planned_end
from forecaster.stats import TINY, Z90

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster

# At most this many finished siblings of a group are cut and forecast (those nearest the targets'
# planned length), each beside at most COPY_SIZE - 1 of its group's other runs: the extra pass
# costs a bounded multiple of a group's fit, not a square of its size.
MAX_SIBLINGS = 4
COPY_SIZE = 5
# Pseudo-count of siblings at factor 1 in the shrinkage of log(factor): chosen on the dev sets, as
# leave-one-data-set-out chose it for three of the four (docs/benchmarks.md, section 2.1).
SHRINK = 1.0
# How a group's copies' errors make its factor (`factors`): chosen with SHRINK
HOW = "rms"
# Whether `Forecaster` and `forecast predict` calibrate bands unless told (docs/benchmarks.md, 2.1)
ON_BY_DEFAULT = False
SEP = "\x1fselfcal:"  # joins a group's name and a sibling's in a copy's group name


@dataclass
class GroupCalibration:
    """One group's calibration: the standardised errors of its cut siblings and the factor applied."""

    siblings: int  # copies that were forecast
    raw: float  # the factor that would calibrate the copies' bands exactly (1 with none)
    factor: float  # raw shrunk toward 1


def sibling_errors(fc: Forecaster) -> dict[str, list[np.ndarray]]:
    """Per group of `fc` (fitted) that has targets and finished siblings: for each sibling cut at
    the targets' share of their run and forecast the same way, its log error at each hidden point
    in units of its band's half-width on that side (widened by its laws' disagreement). One extra
    fit call for all groups."""
    from forecaster.params import clone

    hist = fc.histories_
    targets: dict[str, list[int]] = {}
    finished: dict[str, list[int]] = {}
    for i, h in enumerate(hist):
        if i in fc.skipped_:
            continue
        (targets if h.horizon is not None and len(h.horizon) else finished).setdefault(h.group, []).append(i)
    copies: list[RunHistory] = []
    owners: list[tuple[str, int, RunHistory]] = []  # (group, row of the copy, the sibling uncut)
    for g, tg in targets.items():
        fin = finished.get(g, [])
        if not fin:
            continue
        # one share per group (its targets' median), so that a group's copies are forecast once
        share = float(np.median([hist[t].last_step / max(planned_end(hist[t]), 1) for t in tg]))
        length = float(np.median([planned_end(hist[t]) for t in tg]))
        order = sorted(fin, key=lambda j: (abs(math.log(max(planned_end(hist[j]), 1) / max(length, 1))),
                                           hist[j].run))
        for j in order[:MAX_SIBLINGS]:
            h = hist[j]
            keep = h.steps <= share * planned_end(h)
            if keep.sum() < 2 or keep.all():
                continue
            name = f"{g}{SEP}{h.run}"
            owners.append((g, len(copies), h))
            copies.append(replace(h, steps=h.steps[keep], values=h.values[keep], group=name,
                                  horizon=h.steps[~keep], meta={}))
            # beside it, its finished siblings and one of the targets: the group the target is
            # forecast in, less the sibling itself
            for o in [o for o in order if o != j][: COPY_SIZE - 1 - min(len(tg), 1)] + tg[:1]:
                copies.append(replace(hist[o], group=name))
    if not owners:
        return {}
    sub = clone(fc, selfcal=False, init=None).fit(copies)  # cut siblings, judged cold
    out = sub.predict()
    errors: dict[str, list[np.ndarray]] = {}
    for g, row, h in owners:
        f = out[row]
        if f.skipped:
            continue
        z = standardised(f, h.steps, h.values) / disagreement(sub, row, f)
        if len(z):
            errors.setdefault(g, []).append(z)
    return errors


def standardised(f: RunForecast, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """log(value / p50) over the band's log half-width on the same side, at the forecast's steps
    that have a value (|z| <= 1: inside the p10-p90 band)."""
    idx = np.searchsorted(f.steps, steps)
    ok = idx < len(f.steps)
    ok[ok] = f.steps[idx[ok]] == steps[ok]
    idx, y = idx[ok], values[ok]
    p10, p50, p90 = f.p10[idx], f.p50[idx], f.p90[idx]
    e = np.log(y / p50)
    half = np.where(e > 0, np.log(p90 / p50), np.log(p50 / p10))
    return e / np.maximum(half, TINY)


def disagreement(fc: Forecaster, row: int, f: RunForecast) -> float:
    """The factor that widens a run's band to reach the other candidate laws' forecasts of its
    final value (the law family's disagreement, from `law="auto"`'s choice, where its group was
    contested): sqrt(1 + (spread of the laws' log finals / the band's log half-width at the end)^2)."""
    finals = [v for v in fc.law_finals_.get(row, {}).values() if v > 0 and math.isfinite(v)]
    if len(finals) < 2 or f.skipped or not len(f.steps):
        return 1.0
    spread = math.log(max(finals) / min(finals))
    half = max(math.log(f.p90[-1] / f.p10[-1]) / 2, TINY)
    return math.sqrt(1.0 + (spread / half) ** 2)


def factors(errors: dict[str, list[np.ndarray]], shrink: float = SHRINK, how: str = HOW
            ) -> dict[str, GroupCalibration]:
    """Per group, the band factor from its copies' standardised errors, its log shrunk toward 0 as
    n / (n + shrink) with n copies. `how`: "q80", the 80 % quantile of |z| over the copies' points
    (each copy weighing the same), the factor that would have put 80 % of them inside; "rms", the
    root mean square of z scaled so that a Gaussian error falls inside 80 % of the time."""
    out = {}
    for g, zs in errors.items():
        n = len(zs)
        if how == "rms":
            raw = Z90 * math.sqrt(max(float(np.mean([np.mean(z**2) for z in zs])), TINY))
        else:
            a = np.abs(np.concatenate(zs))
            w = np.concatenate([np.full(len(z), 1.0 / len(z)) for z in zs])
            order = np.argsort(a)
            cum = np.cumsum(w[order]) / w.sum()
            raw = float(a[order][min(np.searchsorted(cum, 0.8), len(a) - 1)])
        raw = max(raw, TINY)
        out[g] = GroupCalibration(n, raw, math.exp(n / (n + shrink) * math.log(raw)))
    return out


def rescale(f: RunForecast, cal: GroupCalibration, widen: float = 1.0) -> RunForecast:
    """`f` with every quantile's log distance from the p50 multiplied by the group's factor and
    the run's own `widen` (its laws' disagreement)."""
    if f.skipped or not len(f.steps):
        return f
    c = cal.factor * widen

    def scaled(q: np.ndarray) -> np.ndarray:
        return f.p50 * np.exp(c * np.log(np.maximum(q, TINY) / f.p50))

    samples = None
    if f.final_samples is not None:
        mid = f.p50[-1]
        samples = mid * np.exp(c * np.log(np.maximum(f.final_samples, TINY) / mid))
    note = (f"band scaled x{c:.2f} in log space: {cal.siblings} finished sibling(s), cut at this run's share "
            f"and forecast the same way, erred by x{cal.raw:.2f} of an 80 % band (shrunk toward 1)"
            + (f"; x{widen:.2f} for the candidate laws' disagreement on its final" if widen > 1 else ""))
    return replace(f, p10=np.minimum(scaled(f.p10), f.p50), p90=np.maximum(scaled(f.p90), f.p50),
                   final_samples=samples, notes=[*f.notes, note],
                   extra_quantiles={lv: scaled(q) for lv, q in f.extra_quantiles.items()})


def calibrate(fc: Forecaster, done: dict[int, RunForecast]) -> dict[int, RunForecast]:
    """`done` (fc's forecasts by history index) with each group's band scaled by its siblings'
    calibration; groups without a finished sibling unchanged. Sets ``fc.selfcal_`` (by group)."""
    fc.selfcal_ = factors(sibling_errors(fc), SHRINK)
    return {i: rescale(f, fc.selfcal_[fc.histories_[i].group], disagreement(fc, i, f))
            if fc.histories_[i].group in fc.selfcal_ else f for i, f in done.items()}
