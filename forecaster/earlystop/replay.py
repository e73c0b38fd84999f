"""Replay a group's runs in file order as if trained one after another, deciding with the stop rule.

At each checkpoint the rule sees only what a live search would have: the prefix of the running
run and the outcome of the runs before it (finished runs' finals, stopped runs' last values). The
forecasts it needs do not depend on earlier decisions (each run is forecast from its own prefix and
its planned LR), so they are made up front, one batched `Forecaster` call per law and checkpoint
for all runs; the decisions then replay sequentially. The group enters through calibration: the
forecast errors of runs that finished earlier form the predictive of later runs at the same
checkpoint (split-conformal: the stated probability is never below 1/(n+1) with n earlier finished
runs, so with delta 0.05 no run is stopped before about 20 runs have finished).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from forecaster.calibration import final_quantiles, local_quantiles
from forecaster.earlystop.lawchoice import bounded_from, law_score, score_from
from forecaster.earlystop.rule import Evidence, StopRule
from forecaster.earlystop.settings import EarlyStopSettings
from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory

FINAL_POINTS = 3  # a run's outcome = mean of its last 3 evaluated values (shared docs/evaluation.md)


@dataclass
class _Run:
    """One complete run as the replay sees it."""

    history: RunHistory
    outcome: float  # mean of the last FINAL_POINTS values (truth)

    @property
    def steps(self) -> np.ndarray:
        return self.history.steps

    @property
    def cost(self) -> float:
        return float(self.history.steps[-1])


def _outcome(values: np.ndarray) -> float:
    return float(np.mean(values[-FINAL_POINTS:]))


@dataclass
class MethodResult:
    """Decisions of one stop rule over all groups and the scores that follow from them."""

    name: str
    stops: dict[str, int]  # run -> number of observed points when stopped
    stated: list[tuple[float, bool]] = field(default_factory=list)  # (P(beat best), beat it?) at checks
    covered: list[bool] = field(default_factory=list)  # truth inside the stated (calibrated) 90 % interval
    covered_raw: list[bool] = field(default_factory=list)  # ...inside the core's own 90 % band
    stop_probs: list[tuple[float, bool]] = field(default_factory=list)  # at each stop
    laws: dict[tuple[int, str], int] = field(default_factory=dict)  # (checkpoint index, law) -> calibrated checks
    seconds: float = 0.0


def _groups(histories: list[RunHistory]) -> tuple[dict[str, list[_Run]], list[str]]:
    """Complete runs by group, in file order; runs that cannot be replayed are named, not dropped."""
    groups: dict[str, list[_Run]] = {}
    notes = []
    for h in histories:
        if len(h.values) < FINAL_POINTS + 1:
            notes.append(f"run {h.run!r}: {len(h.values)} values, too few to replay")
            continue
        if np.any(h.values <= 0):
            raise InputError(f"run {h.run!r} has non-positive {h.metric} values: the early-stop replay needs a "
                             "positive, lower-is-better metric (e.g. error = 1 - accuracy)")
        groups.setdefault(h.group, []).append(_Run(h, _outcome(h.values)))
    if not groups:
        raise InputError("nothing to replay: no run has enough values")
    return groups, notes


def checkpoints(n: int, s: EarlyStopSettings) -> list[int]:
    """Numbers of observed points at which a run of `n` logged points is checked (never its last)."""
    grid, share = [], max(s.first_share, s.min_points / max(n, 1))
    while True:
        k = max(s.min_points, int(math.ceil(share * n)))
        if k >= n:
            break
        if not grid or k > grid[-1]:
            grid.append(k)
        share *= s.ratio
    return grid


def _share_grid(runs: list[_Run], s: EarlyStopSettings) -> dict[str, list[int]]:
    return {r.history.run: checkpoints(len(r.steps), s) for r in runs}


def _prefix(h: RunHistory, k: int, group: str) -> RunHistory:
    """The run as seen after k observed points: LR plan kept, horizon = its last logged step."""
    return RunHistory(h.run, h.steps[:k], h.values[:k], group=group, lr_steps=h.lr_steps, lr_values=h.lr_values,
                      schedule=h.schedule, horizon=h.steps[-1:], size=h.size, metric=h.metric)


def _context(h: RunHistory, group: str) -> RunHistory:
    """A finished sibling as fit-only context: its complete history, no horizon (not forecast)."""
    return RunHistory(h.run, h.steps, h.values, group=group, lr_steps=h.lr_steps, lr_values=h.lr_values,
                      schedule=h.schedule, horizon=None, size=h.size, metric=h.metric)


def contexts(groups: dict[str, list[_Run]], stops: dict[str, int], cap: int) -> dict[str, tuple[str, ...]]:
    """Per run, the `cap` most recent earlier runs of its group that finished (were not stopped)."""
    out: dict[str, tuple[str, ...]] = {}
    for runs in groups.values():
        done: list[str] = []
        for r in runs:
            out[r.history.run] = tuple(done[-cap:]) if cap > 0 else ()
            if r.history.run not in stops:
                done.append(r.history.run)
    return out


def forecast_checkpoints(runs: dict[str, _Run], need: set[tuple[str, int, str]], grid: dict[str, list[int]],
                         s: EarlyStopSettings, out: dict[tuple[str, int, tuple[str, ...], str], RunForecast],
                         ctx: dict[str, tuple[str, ...]] | None = None,
                         progress: Callable[[str], None] | None = None) -> None:
    """Forecast the (run, points, law) prefixes in `need`: one batched Forecaster call per law and
    checkpoint index.

    Each prefix is its own fitting group together with its finished siblings `ctx[run]` (complete
    histories, fit-only), so it borrows their curve shape through partial pooling but no run sees
    another run's future. Runs keep their planned LR, so schedule-aware laws know what annealing
    lies ahead. Results land in `out` under (run, points, context, law).
    """
    from forecaster.forecast import Forecaster

    ctx = ctx or {}
    by_c: dict[tuple[str, int], list[tuple[_Run, int]]] = {}
    for run, k, law in sorted(need):
        by_c.setdefault((law, grid[run].index(k)), []).append((runs[run], k))
    kw = {} if s.pool is None else {"pool": s.pool}
    for law, c in sorted(by_c, key=lambda lc: (lc[1], lc[0])):
        batch = by_c[(law, c)]
        t0 = time.perf_counter()
        hs, at = [], []
        for r, k in batch:
            label = f"{r.history.group}\x1f{r.history.run}\x1f{c}"
            at.append(len(hs))
            hs.append(_prefix(r.history, k, label))
            hs.extend(_context(runs[o].history, label) for o in ctx.get(r.history.run, ()))
        fcs = Forecaster(law=law, device=s.device, seed=s.seed, **kw).fit(hs).predict()
        for (r, k), i in zip(batch, at):
            out[(r.history.run, k, ctx.get(r.history.run, ()), law)] = fcs[i]
        if progress:
            progress(f"checkpoint {c + 1}, law {law}: {len(batch)} runs forecast in one call "
                     f"({len(hs) - len(batch)} context histories), {time.perf_counter() - t0:.1f} s")


def _valid(f: RunForecast | None) -> bool:
    return (f is not None and not f.skipped and len(f.p50) > 0 and f.final is not None
            and math.isfinite(f.final) and f.final > 0)


def _by_law(f: RunForecast | dict[str, RunForecast] | None) -> dict[str, RunForecast]:
    """A checkpoint's forecasts per law (a single forecast stands for its own law)."""
    if f is None:
        return {}
    if isinstance(f, RunForecast):
        return {f.law or "": f}
    return f


def replay_forecast_rule(groups: dict[str, list[_Run]], grid: dict[str, list[int]],
                         forecasts: dict[tuple[str, int], RunForecast | dict[str, RunForecast]],
                         s: EarlyStopSettings, missing: set[tuple[str, int]] | None = None) -> MethodResult:
    """Sequential decisions of our rule from forecasts made so far, with online group calibration.

    ``forecasts[(run, points)]`` is one forecast or several, one per candidate law. With several,
    each checkpoint of a group uses the law whose stated 90 % intervals have scored best so far on
    the runs of the group that finished (prequential interval score: each finished run's outcome
    scored against the interval built from the runs that finished before it, as a live search
    would have stated it; ties keep the earlier law). Only finished runs decide, never the run
    being judged.

    A checkpoint a run reaches whose forecast is not in `forecasts` yet is added to `missing`
    (and the run goes on there), so the caller can forecast exactly the prefixes a replay reaches.
    """
    res = MethodResult("forecaster", {})
    rule = StopRule.from_settings(s)
    scored_from = score_from(s)
    for runs in groups.values():
        finished: list[float] = []
        evidence: dict[tuple[int, str], Evidence] = {}  # per (checkpoint index, law)
        penalty: dict[tuple[int, str], float] = {}  # summed prequential law_score, same runs per law

        def seen(c: int, law: str) -> Evidence:
            return evidence.get((c, law)) or Evidence()

        for r in runs:
            best = min(finished) if finished else None
            ks = grid[r.history.run]
            for c, k in enumerate(ks):
                fl = {law: f for law, f in _by_law(forecasts.get((r.history.run, k))).items() if _valid(f)}
                if not fl:
                    if missing is not None and (r.history.run, k) not in forecasts:
                        missing.add((r.history.run, k))
                    continue
                # candidates in the caller's order (fewest parameters first): ties keep the simpler
                law = min(fl, key=lambda n: penalty.get((c, n), 0.0))
                f = fl[law]
                ev = seen(c, law)
                calibrated = rule.calibrated(ev)
                lo, hi = final_quantiles(f, [0.05, 0.95], None)
                res.covered_raw.append(bool(lo <= r.outcome <= hi))
                if calibrated:
                    res.laws[(c, law)] = res.laws.get((c, law), 0) + 1
                if calibrated and len(ev.pairs) >= bounded_from(0.1):
                    # the stated interval is the local one: conditional on where this run is heading;
                    # with fewer finished runs its conformal levels reach 0 and 1 (no bounded 90 %
                    # interval exists), so none is stated and none is scored
                    lo, hi = local_quantiles(f, [0.05, 0.95], ev.near(), s.neighbours)
                    res.covered.append(bool(lo <= r.outcome <= hi))
                # no run is stopped (nor a probability stated) before calibration exists
                verdict = rule.judge(f, best, ev)
                if verdict is None:
                    continue
                res.stated.append((verdict.prob, r.outcome < verdict.bar))
                if verdict.stop:
                    res.stops[r.history.run] = k
                    res.stop_probs.append((verdict.prob, r.outcome < verdict.bar))
                    break
            if r.history.run not in res.stops:
                finished.append(r.outcome)
                for c, k in enumerate(ks):
                    got = _by_law(forecasts.get((r.history.run, k)))
                    if not got and missing is not None:
                        missing.add((r.history.run, k))
                    fl = {law: f for law, f in got.items() if _valid(f)}
                    # score the laws on this run only when every one of them could be scored, so
                    # each law's sum runs over the same runs, and only once the stated interval is
                    # bounded: below 2/alpha - 1 calibration runs its conformal levels reach 0 and 1
                    if fl and len(fl) == len(got) and len(fl) > 1 and all(
                            len(seen(c, n).pairs) >= scored_from for n in fl):
                        for n, f in fl.items():
                            penalty[(c, n)] = penalty.get((c, n), 0.0) + law_score(f, r.outcome, seen(c, n).near(), s)
                    for n, f in fl.items():
                        evidence.setdefault((c, n), Evidence()).add(f, r.outcome)
    return res
