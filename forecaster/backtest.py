"""Backtest protocol (shared docs/evaluation.md): hide the tail of finished runs, score forecasts and baselines.

A *case* is a group of sibling runs with one *target* cut at a share of its planned steps: its metric
after the cut is blanked, its LR rows are kept to the end, every sibling stays complete. Truth is
the mean of the target's last 3 evaluated values, the prediction the mean p50 at those steps.
`run_backtest` runs every case through one `Forecaster` call; the other functions are pure.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import least_squares

from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster

FINAL_POINTS = 3  # truth = mean of the last 3 evaluated values
MIN_OBSERVED = 5  # fewer observed points than this at the cut: the case is not scored
METHODS = ("forecaster", "last_value", "power_law")


@dataclass
class Case:
    """One target cut at `cutoff` among its complete siblings; `histories` share one case group."""

    group: str
    target: str
    cutoff: float
    cut_step: int
    histories: list[RunHistory]
    target_index: int
    hidden_steps: np.ndarray  # target metric steps after the cut (the unseen truth)
    hidden_values: np.ndarray
    skipped: str | None = None

    @property
    def key(self) -> str:
        return case_group(self.group, self.target, self.cutoff)

    @property
    def final_steps(self) -> np.ndarray:
        return self.hidden_steps[-FINAL_POINTS:]

    @property
    def truth(self) -> float:
        return float(np.mean(self.hidden_values[-FINAL_POINTS:]))

    @property
    def observed(self) -> RunHistory:
        return self.histories[self.target_index]


@dataclass
class Score:
    """How one method forecast one case."""

    prediction: float
    final_error: float  # |prediction - truth| / truth
    unseen_error: float  # mean relative error over every hidden point
    coverage: float | None = None  # share of hidden points inside [p10, p90]
    inside: int = 0
    points: int = 0


@dataclass
class CaseResult:
    """A case with each method's score (none when the case or the forecast was skipped)."""

    case: Case
    scores: dict[str, Score] = field(default_factory=dict)
    law: str | None = None
    skipped: str | None = None


def case_group(group: str, target: str, cutoff: float) -> str:
    """The group name a case's runs carry inside the single batched forecaster call."""
    return f"{group} | {target} @ {cutoff:g}"


def planned_last_step(h: RunHistory) -> int:
    """The run's last row (metric or LR): its planned length."""
    rows = h.meta.get("row_steps")
    last = [h.last_step]
    if rows is not None and len(rows):
        last.append(int(rows[-1]))
    if h.lr_steps is not None and len(h.lr_steps):
        last.append(int(h.lr_steps[-1]))
    return max(last)


def is_finished(h: RunHistory) -> bool:
    """A run whose metric was observed up to its last row (nothing left to forecast)."""
    return len(h.steps) >= FINAL_POINTS and (h.horizon is None or len(h.horizon) == 0)


def make_cases(histories: list[RunHistory], cutoffs: list[float], min_observed: int = MIN_OBSERVED) -> list[Case]:
    """Every (finished target, cutoff) of every group, in input order."""
    by_group: dict[str, list[RunHistory]] = {}
    for h in histories:
        by_group.setdefault(h.group, []).append(h)
    cases = []
    for group, members in by_group.items():
        for ti, target in enumerate(members):
            if not is_finished(target):
                continue
            planned = planned_last_step(target)
            for cutoff in cutoffs:
                cut = int(math.floor(cutoff * planned))
                name = case_group(group, target.run, cutoff)
                seen = target.steps <= cut
                rows = target.meta.get("row_steps", target.steps)
                last_seen = int(target.steps[seen][-1]) if seen.any() else -1
                cut_target = replace(
                    target, steps=target.steps[seen], values=target.values[seen], group=name,
                    horizon=np.asarray(rows)[np.asarray(rows) > last_seen],
                    meta={**target.meta, "case_target": True},
                )
                sibs = [cut_target if i == ti else replace(h, group=name, horizon=None)
                        for i, h in enumerate(members)]
                case = Case(group, target.run, cutoff, cut, sibs, ti,
                            target.steps[~seen], target.values[~seen])
                if len(case.hidden_steps) < FINAL_POINTS:
                    case.skipped = f"the cut at step {cut} leaves fewer than {FINAL_POINTS} hidden points"
                elif seen.sum() < min_observed:
                    case.skipped = f"only {int(seen.sum())} observed points before the cut at step {cut}"
                cases.append(case)
    return cases


def score(case: Case, steps: np.ndarray, p50: np.ndarray, p10: np.ndarray | None = None,
          p90: np.ndarray | None = None) -> Score:
    """Errors of a forecast (at `steps`, covering the hidden steps) against the case's hidden truth."""
    steps = np.asarray(steps, dtype=np.float64)
    at = case.hidden_steps.astype(np.float64)
    pred = np.interp(at, steps, p50)
    truth = case.hidden_values
    final_pred = float(np.mean(pred[-FINAL_POINTS:]))
    rel = np.abs(pred - truth) / np.abs(truth)
    s = Score(prediction=final_pred, final_error=abs(final_pred - case.truth) / abs(case.truth),
              unseen_error=float(np.mean(rel)), points=len(truth))
    if p10 is not None and p90 is not None:
        lo, hi = np.interp(at, steps, p10), np.interp(at, steps, p90)
        s.inside = int(np.sum((truth >= lo) & (truth <= hi)))
        s.coverage = s.inside / len(truth)
    return s


def last_value(case: Case) -> np.ndarray:
    """Baseline: the last observed value, held flat over the hidden steps."""
    return np.full(len(case.hidden_steps), float(case.observed.values[-1]))


def power_law(case: Case) -> np.ndarray:
    """Baseline: a schedule-blind power law E + A*t^-alpha fitted to the target's own prefix."""
    t = case.observed.steps.astype(np.float64).clip(1.0)
    y = case.observed.values
    scale = float(t.max())
    x = t / scale  # well-conditioned: A is the excess loss at the last observed step
    # variable projection over alpha for the starts; least_squares refines all three
    best: tuple[float, float, float, float] | None = None
    for a in np.geomspace(0.05, 3.0, 25):
        design = np.stack([np.ones_like(x), x ** -a], 1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(np.sum((design @ coef - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, coef[0], coef[1], a)
    assert best is not None  # the loop above ran
    _, e0, a0, al0 = best
    p0 = np.array([max(e0, 0.0), max(a0, 1e-9), al0])

    def resid(p: np.ndarray) -> np.ndarray:
        return p[0] + p[1] * x ** -p[2] - y

    try:
        fit = least_squares(resid, p0, bounds=([0.0, 0.0, 1e-4], [np.inf, np.inf, 10.0]), method="trf")
        e, amp, alpha = fit.x
    except (ValueError, np.linalg.LinAlgError):  # degenerate prefix: fall back to the start
        e, amp, alpha = p0
    xs = case.hidden_steps.astype(np.float64).clip(1.0) / scale
    return e + amp * xs ** -alpha


def evaluate(cases: list[Case], forecasts: list[RunForecast | None]) -> list[CaseResult]:
    """Score the forecaster's forecast of each case's target plus both baselines."""
    out = []
    for case, fc in zip(cases, forecasts):
        res = CaseResult(case)
        if case.skipped:
            res.skipped = case.skipped
        elif fc is None or fc.skipped or not len(fc.steps):
            res.skipped = f"forecaster skipped the target: {fc.skipped if fc else 'no forecast'}"
        else:
            res.law = fc.law
            res.scores["forecaster"] = score(case, fc.steps, fc.p50, fc.p10, fc.p90)
            res.scores["last_value"] = score(case, case.hidden_steps, last_value(case))
            res.scores["power_law"] = score(case, case.hidden_steps, power_law(case))
        out.append(res)
    return out


def run_backtest(histories: list[RunHistory], cutoffs: list[float], forecaster: Forecaster | None = None
                 ) -> tuple[list[CaseResult], dict[str, Any]]:
    """Cut, forecast every case in one call of a clone of `forecaster` (default settings when
    None), score against the baselines. Also returns how many histories were fitted, and how long it took."""
    from forecaster.params import clone

    cases = make_cases(histories, cutoffs)
    if not cases:
        raise InputError("nothing to backtest: no finished run (metric observed to its last row, "
                         f"at least {FINAL_POINTS} points)")
    live = [c for c in cases if not c.skipped]
    flat: list[RunHistory] = [h for c in live for h in c.histories]
    forecasts: list[RunForecast | None] = [None] * len(cases)
    info: dict[str, Any] = {"histories": len(flat)}
    if flat:
        if forecaster is None:
            from forecaster.forecast import Forecaster

            forecaster = Forecaster()
        t0 = time.perf_counter()
        fc = clone(forecaster).fit(flat)
        out = fc.predict()
        info.update(seconds=time.perf_counter() - t0, device=str(fc.device_))
        k = 0
        live_ids = {id(c) for c in live}
        for i, c in enumerate(cases):
            if id(c) in live_ids:
                forecasts[i] = out[k + c.target_index]
                k += len(c.histories)
    return evaluate(cases, forecasts), info


def summarize(results: list[CaseResult], cutoffs: list[float]) -> list[dict[str, Any]]:
    """Per cutoff and method: mean and worst final error, mean unseen error, band coverage."""
    rows = []
    for cutoff in cutoffs:
        at = [r for r in results if r.case.cutoff == cutoff]
        done = [r for r in at if not r.skipped]
        methods: dict[str, Any] = {}
        for m in METHODS:
            sc = [r.scores[m] for r in done if m in r.scores]
            if not sc:
                continue
            fin = np.array([s.final_error for s in sc])
            uns = np.array([s.unseen_error for s in sc])
            entry = {"final_mean": float(fin.mean()), "final_worst": float(fin.max()),
                     "unseen_mean": float(uns.mean()), "unseen_worst": float(uns.max())}
            if sc[0].coverage is not None:
                entry["coverage"] = sum(s.inside for s in sc) / max(1, sum(s.points for s in sc))
            methods[m] = entry
        rows.append({"cutoff": cutoff, "cases": len(done), "skipped": len(at) - len(done), "methods": methods})
    return rows


def case_records(results: list[CaseResult]) -> list[dict[str, Any]]:
    """One JSON-ready record per case."""
    out = []
    for r in results:
        c = r.case
        rec: dict[str, Any] = {"group": c.group, "target": c.target, "cutoff": c.cutoff, "cut_step": c.cut_step,
                               "observed_points": int(len(c.observed.steps)),
                               "hidden_points": int(len(c.hidden_steps)), "skipped": r.skipped, "law": r.law,
                               "truth": c.truth if len(c.hidden_steps) else None}
        for m, s in r.scores.items():
            rec[m] = {"prediction": s.prediction, "final_error": s.final_error, "unseen_error": s.unseen_error}
            if s.coverage is not None:
                rec[m]["coverage"] = s.coverage
        out.append(rec)
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (errors in %)."""
    lines = ["| cutoff | method | cases | final err mean % | final err worst % | unseen err mean % | "
             "band coverage % |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for m, e in row["methods"].items():
            cov = f"{100 * e['coverage']:.1f}" if "coverage" in e else "-"
            lines.append(f"| {row['cutoff']:g} | {m} | {row['cases']} | {100 * e['final_mean']:.3f} | "
                         f"{100 * e['final_worst']:.3f} | {100 * e['unseen_mean']:.3f} | {cov} |")
        if not row["methods"]:
            lines.append(f"| {row['cutoff']:g} | - | 0 | - | - | - | - |")
    return "\n".join(lines)
