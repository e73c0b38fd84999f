"""Early-stopping backtest: replay each group's runs in file order as if trained one after another.

At each checkpoint a stop rule sees only what a live search would have: the prefix of the running
run and the outcome of the runs before it (finished runs' finals, stopped runs' last values). Our
rule stops a run when P(final ends below the best finished run * (1 + margin)) < delta (docs/laws.md
§3, stopping runs; the margin is the one the false-stop rate counts). The
forecasts it needs do not depend on earlier decisions (each run is forecast from its own prefix and
its planned LR), so they are made up front, one batched `Forecaster` call per law and checkpoint
for all runs; the decisions then replay sequentially. The group enters through calibration: the
forecast errors of runs that finished earlier, standardised by their stated band, form the
predictive of later runs at the same checkpoint (split-conformal: the stated probability is never
below 1/(n+1) with n earlier finished runs, so with delta 0.05 no run is stopped before about 20
runs have finished; intervals use the conformal quantile levels).

Under ``law="auto"`` each prefix is forecast with every law auto would consider for it, and each
group and checkpoint uses the law whose calibrated 90 % intervals have scored best (interval
score) on the group's finished runs so far. A lone prefix gives `Forecaster`'s own auto choice
nothing to judge by, while the finished siblings' errors at the same checkpoint do: that is the
evidence a live search has about which law forecasts its runs best that early.

The same replay drives Optuna's MedianPruner, SuccessiveHalvingPruner and HyperbandPruner through
its real ask/report/should_prune/tell API on an in-memory study, and a patience rule. Reported per
method: compute saved, regret, false-stop rate, whether the best run was stopped, calibration.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.stats import norm

from forecaster import DISTRIBUTION
from forecaster.alerts import final_quantiles, prob_final_below
from forecaster.csvio import jsonable
from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory
from forecaster.stats import band_log_sd

log = logging.getLogger(__name__)

FINAL_POINTS = 3  # a run's outcome = mean of its last 3 evaluated values (shared docs/evaluation.md)
MAX_REPORTS = 200  # baselines see at most this many evenly spaced logged steps per run
BASELINES = ("median", "successive_halving", "hyperband", "patience")


@dataclass
class EarlyStopSettings:
    """Thresholds of the rule and of the replay (checkpoints, margin, baseline settings)."""

    delta: float = 0.05  # stop when P(final < best finished run * (1 + margin)) < delta
    margin: float = 0.01  # relative: a run ending within this of the true best counts as near-best
    min_points: int = 5  # first check after this many observed values
    first_share: float = 0.1  # ...and not before this share of the run's logged points
    ratio: float = 1.4  # checkpoints at geometrically spaced shares of each run's logged points
    min_calibration: int = 5  # finished runs needed before the rule may stop anything
    # local calibration: the finished siblings whose forecast at the same checkpoint was nearest
    # (in log) to the run's; 50 keeps the conformal floor 1/51 well under delta
    neighbours: int = 50
    patience: int = 5  # patience rule: stop after this many checks without a new best value
    startup_trials: int = 5  # Optuna pruners' n_startup_trials (median), same warm-up as ours
    # context: each running run is fitted jointly with (partially pooled towards) this many most
    # recent finished siblings, complete histories without a horizon; 0 = its own prefix only.
    # Off by default: on LSTM PTB it cost ~20x the fitting time per round and several replay
    # rounds to settle (docs/benchmarks.md, "Early stopping")
    context: int = 0
    pool: float | None = None  # Forecaster's deviation penalty; None = the core's default
    max_rounds: int = 30  # replay rounds allowed for contexts to agree with the decisions
    # "auto": every law Forecaster's auto would consider, chosen per group and checkpoint by the
    # finished runs' interval scores (replay_forecast_rule); a law name: that law only
    law: str = "auto"
    # how the finished runs judge the laws: "interval" (interval score of the stated 1 - alpha
    # interval), or, as experiments, "log" (log density under the local predictive) and "crps"
    law_score: str = "interval"
    law_score_alpha: float = 0.1  # the stated interval is the 90 % one
    # finished runs scored before laws are compared; None = 2/alpha - 1, the fewest with which the
    # conformal interval is bounded (below that its levels reach 0 and 1)
    law_score_from: int | None = None
    device: str | None = None
    seed: int = 0


# -- replay bookkeeping ----------------------------------------------------------------------------
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


def candidate_laws(h: RunHistory, law: str) -> tuple[str, ...]:
    """The laws a run's prefixes are forecast with: the one asked for, or under ``auto`` every law
    `Forecaster(law="auto")` would consider for it (schedule-free without an LR column)."""
    from forecaster import laws
    from forecaster.eligibility import informative_lr

    if law != "auto":
        return (law,)
    names = laws.automatic(needs_lr=informative_lr(h))
    return tuple(sorted(names, key=lambda n: (len(laws.get(n).params), n)))


def _log_scale(f: RunForecast) -> float:
    return band_log_sd(*f.final_interval)


def _local(lf: float, cal: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Local predictive of log final: log forecast + raw log errors of the k nearest siblings' forecasts.

    ``cal`` rows are (log forecast, log outcome) of earlier finished runs at the same checkpoint.
    Errors of runs forecast to end where this one is forecast to end (e.g. slow starters among
    the bad-looking) replace one group-wide error shape; the kernel bandwidth is Silverman's
    robust rule, so a handful of late bloomers widen the tail without inflating the whole band.
    """
    if len(cal) > k:
        cal = cal[np.argsort(np.abs(cal[:, 0] - lf), kind="stable")[:k]]
    r = cal[:, 1] - cal[:, 0]
    q75, q25 = np.percentile(r, [75, 25])
    h = 0.9 * min(float(np.std(r)), (q75 - q25) / 1.34) * len(r) ** -0.2
    return lf + r, max(h, 1e-3)


def local_prob_below(f: RunForecast, value: float, cal: np.ndarray, k: int) -> float:
    """P(final < value) under the local predictive, split-conformal (never below 1/(n+1))."""
    cen, h = _local(math.log(f.final), cal, k)
    n = len(cen)
    return float((n * np.mean(norm.cdf((math.log(value) - cen) / h)) + 1) / (n + 1))


def local_quantiles(f: RunForecast, qs: list[float], cal: np.ndarray, k: int) -> np.ndarray:
    """Quantiles of the local predictive at the split-conformal levels (as `final_quantiles`)."""
    cen, h = _local(math.log(f.final), cal, k)
    n = len(cen)
    grid = (cen[:, None] + h * norm.ppf((np.arange(64) + 0.5) / 64)[None, :]).ravel()
    q = np.asarray(qs, dtype=float)
    levels = np.where(q < 0.5, (q * (n + 1) - 1) / n, q * (n + 1) / n).clip(0.0, 1.0)
    return np.exp(np.quantile(grid, levels))


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
    cen, h = _local(math.log(f.final), cal, s.neighbours)
    y = math.log(value)
    if s.law_score == "log":
        z = norm.logpdf((y - cen) / h) - math.log(h)
        return -float(np.logaddexp.reduce(z) - math.log(len(z)))
    if s.law_score == "crps":
        # CRPS of the kernel mixture, E|X - y| - E|X - X'|/2, on its deterministic 16-point quantiles
        g = (cen[:, None] + h * norm.ppf((np.arange(16) + 0.5) / 16)[None, :]).ravel()
        return float(np.mean(np.abs(g - y)) - 0.5 * np.mean(np.abs(g[:, None] - g[None, :])))
    raise ValueError(f"unknown law score {s.law_score!r}")


def bounded_from(alpha: float) -> int:
    """Finished runs from which a split-conformal 1 - alpha interval is bounded (its levels stay in
    (0, 1)): 2 / alpha - 1, 19 for the 90 % interval."""
    return int(round(2 / alpha)) - 1


def score_from(s: EarlyStopSettings) -> int:
    return s.law_score_from if s.law_score_from is not None else bounded_from(s.law_score_alpha)


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
    scored_from = score_from(s)
    for runs in groups.values():
        finished: list[float] = []
        # per (checkpoint index, law): standardised log errors and (log forecast, log outcome)
        residuals: dict[tuple[int, str], list[float]] = {}
        pairs: dict[tuple[int, str], list[tuple[float, float]]] = {}
        penalty: dict[tuple[int, str], float] = {}  # summed prequential law_score, same runs per law

        def near(c: int, law: str) -> np.ndarray:
            return np.asarray(pairs.get((c, law), []), dtype=float).reshape(-1, 2)

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
                cal = np.asarray(residuals.get((c, law), []))
                use = cal if len(cal) >= s.min_calibration else None
                nb = near(c, law)
                lo, hi = final_quantiles(f, [0.05, 0.95], None)
                res.covered_raw.append(bool(lo <= r.outcome <= hi))
                if use is not None:
                    res.laws[(c, law)] = res.laws.get((c, law), 0) + 1
                if use is not None and len(nb) >= bounded_from(0.1):
                    # the stated interval is the local one: conditional on where this run is heading;
                    # with fewer finished runs its conformal levels reach 0 and 1 (no bounded 90 %
                    # interval exists), so none is stated and none is scored
                    lo, hi = local_quantiles(f, [0.05, 0.95], nb, s.neighbours)
                    res.covered.append(bool(lo <= r.outcome <= hi))
                if best is None:
                    continue
                # "could still end within the margin of the best": what a false stop would lose
                bar = best * (1.0 + s.margin)
                if use is None:
                    continue  # no run is stopped (nor a probability stated) before calibration exists
                # stop only when both calibrations agree: the group-wide standardised errors and
                # the errors of the siblings forecast nearest to this run (late bloomers hide there)
                p = max(prob_final_below(f, bar, use), local_prob_below(f, bar, nb, s.neighbours))
                if not np.isfinite(p):
                    continue
                res.stated.append((p, r.outcome < bar))
                if p < s.delta:
                    res.stops[r.history.run] = k
                    res.stop_probs.append((p, r.outcome < bar))
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
                            len(pairs.get((c, n), ())) >= scored_from for n in fl):
                        for n, f in fl.items():
                            penalty[(c, n)] = penalty.get((c, n), 0.0) + law_score(f, r.outcome, near(c, n), s)
                    for n, f in fl.items():
                        z = (math.log(r.outcome) - math.log(f.final)) / _log_scale(f)
                        residuals.setdefault((c, n), []).append(z)
                        pairs.setdefault((c, n), []).append((math.log(f.final), math.log(r.outcome)))
    return res


def _report_points(n: int) -> np.ndarray:
    """Indices (into a run's points) at which baselines are asked: all, or MAX_REPORTS evenly spaced."""
    if n <= MAX_REPORTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_REPORTS).round().astype(int))


def _pruner(name: str, runs: list[_Run], s: EarlyStopSettings):
    import optuna

    first = int(np.median([r.steps[min(s.min_points, len(r.steps)) - 1] for r in runs]))
    longest = int(max(r.steps[-1] for r in runs))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.startup_trials, n_warmup_steps=first)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, first), reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, first), max_resource=max(longest, first + 1),
                                              reduction_factor=3)
    raise ValueError(name)


def replay_optuna(name: str, groups: dict[str, list[_Run]], s: EarlyStopSettings) -> MethodResult:
    """Drive one Optuna pruner through ask/report/should_prune/tell, one in-memory study per group."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is in the dev extra
        raise InputError(f"the early-stop baselines need optuna: pip install '{DISTRIBUTION}[dev]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    res = MethodResult(name, {})
    t0 = time.perf_counter()
    for g, runs in groups.items():
        # a fixed study name: Hyperband assigns brackets by hashing it with the trial number
        study = optuna.create_study(study_name=f"earlystop-{g}", direction="minimize", pruner=_pruner(name, runs, s),
                                    sampler=optuna.samplers.RandomSampler(seed=s.seed))
        for r in runs:
            trial = study.ask()
            pruned = False
            for i in _report_points(len(r.steps)):
                trial.report(float(r.history.values[i]), int(r.steps[i]))
                if i + 1 < len(r.steps) and trial.should_prune():
                    res.stops[r.history.run] = int(i + 1)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    pruned = True
                    break
            if not pruned:
                study.tell(trial, r.outcome)
    res.seconds = time.perf_counter() - t0
    return res


def replay_patience(groups: dict[str, list[_Run]], s: EarlyStopSettings) -> MethodResult:
    """Classic patience: stop a run after `patience` checks without a new best value of its own."""
    res = MethodResult("patience", {})
    for runs in groups.values():
        for r in runs:
            idx = _report_points(len(r.steps))
            v = r.history.values[idx]
            best = np.minimum.accumulate(v)
            improved = np.r_[True, v[1:] < best[:-1]]
            since = np.arange(len(v)) - np.maximum.accumulate(np.where(improved, np.arange(len(v)), 0))
            hit = np.nonzero((since >= s.patience) & (idx + 1 < len(r.steps)))[0]
            if len(hit):
                res.stops[r.history.run] = int(idx[hit[0]] + 1)
    return res


# -- scores ------------------------------------------------------------------------------------------
def _calibration(m: MethodResult) -> dict[str, Any] | None:
    """Coverage of stated 90 % intervals, reliability of stated probabilities, outcome of stops."""
    if not m.stated and not m.covered_raw:
        return None
    p = np.array([a for a, _ in m.stated])
    y = np.array([b for _, b in m.stated], dtype=float)
    bins = [0, 0.01, 0.05, 0.2, 0.5, 0.8, 1.0001]
    rel = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (p >= lo) & (p < hi)
        if sel.any():
            rel.append({"bin": [lo, min(hi, 1.0)], "n": int(sel.sum()), "stated": float(p[sel].mean()),
                        "observed": float(y[sel].mean())})
    stops = np.array([b for _, b in m.stop_probs], dtype=float)
    return {
        "interval90_coverage": float(np.mean(m.covered)) if m.covered else None,
        "interval_checks": len(m.covered),
        "raw_interval90_coverage": float(np.mean(m.covered_raw)) if m.covered_raw else None,
        "brier": float(np.mean((p - y) ** 2)) if len(p) else None,
        "checks": int(len(p)),
        "reliability": rel,
        "stops_stated_mean": float(np.mean([a for a, _ in m.stop_probs])) if m.stop_probs else None,
        "stops_would_have_beaten_best": float(stops.mean()) if len(stops) else None,
    }


def score(m: MethodResult, groups: dict[str, list[_Run]], margin: float) -> dict[str, Any]:
    """Compute saved, regret, false-stop rate, best-run-stopped and calibration of one method."""
    full = trained = 0.0
    regrets, near_stopped, stopped, best_hits, per_group = [], 0, 0, 0, []
    for g, runs in groups.items():
        outcomes = np.array([r.outcome for r in runs])
        true_best = float(outcomes.min())
        best_run = runs[int(outcomes.argmin())].history.run
        found = []
        for r in runs:
            full += r.cost
            k = m.stops.get(r.history.run)
            if k is None:
                trained += r.cost
                found.append(r.outcome)
            else:
                trained += float(r.steps[k - 1])
                stopped += 1
                near_stopped += int(r.outcome <= true_best * (1 + margin))
                found.append(_outcome(r.history.values[:k]))  # the checkpoint a user would still have
        pick = int(np.argmin(found))
        got = runs[pick].outcome if runs[pick].history.run not in m.stops else found[pick]
        regrets.append(got / true_best - 1.0)
        best_hits += int(best_run in m.stops)
        per_group.append({"group": g, "runs": len(runs), "best_run": best_run, "best_stopped": best_run in m.stops,
                          "regret": regrets[-1]})
    saved = 1.0 - trained / full if full else 0.0
    return {
        "compute_saved": saved,
        "speedup": 1.0 / (1.0 - saved) if saved < 1 else None,
        "regret": float(np.mean(regrets)),
        "regret_max": float(np.max(regrets)),
        "false_stop_rate": near_stopped / stopped if stopped else 0.0,
        "best_run_stopped": bool(best_hits),
        "best_runs_stopped": best_hits,
        "stopped": stopped,
        "near_best_stopped": near_stopped,
        "calibration": _calibration(m),
        "groups": per_group if len(per_group) <= 20 else None,
    }


# -- entry points ------------------------------------------------------------------------------------
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


def run_early_stop(histories: list[RunHistory], settings: EarlyStopSettings | None = None,
                   baselines: tuple[str, ...] = BASELINES,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole backtest: our rule and each baseline replayed on the same runs; JSON-ready result."""
    s = settings or EarlyStopSettings()
    groups, notes = _groups(histories)
    runs = [r for rs in groups.values() for r in rs]
    grid = _share_grid(runs, s)
    t0 = time.perf_counter()
    by_name = {r.history.run: r for r in runs}
    cands = {r.history.run: candidate_laws(r.history, s.law) for r in runs}
    cache: dict[tuple[str, int, tuple[str, ...], str], RunForecast] = {}
    # a run's context (its finished siblings) depends on the decisions about the runs before it, and
    # those on their forecasts: replay with contexts implied by the previous round's decisions
    # until they imply the same contexts again. At that fixed point every forecast used exactly
    # the siblings a live search would have had finished, so the result is the sequential replay.
    ctx = contexts(groups, {}, s.context)

    def view() -> dict[tuple[str, int], dict[str, RunForecast]]:
        out: dict[tuple[str, int], dict[str, RunForecast]] = {}
        for run, ks in grid.items():
            for k in ks:
                got = {law: cache[(run, k, ctx[run], law)] for law in cands[run]
                       if (run, k, ctx[run], law) in cache}
                if len(got) == len(cands[run]):
                    out[(run, k)] = got
        return out

    calls = rounds = 0
    while True:
        # forecast only the prefixes the replay reaches: whatever the replay with the forecasts
        # so far reaches next, until it needs nothing new
        reached: set[tuple[str, int]] = set()
        replay_forecast_rule(groups, grid, view(), s, reached)
        if reached:
            # a run that got past a checkpoint usually gets past the next ones: forecast them all now
            need = {(run, k, law) for run, k0 in reached for k in grid[run] if k >= k0
                    for law in cands[run] if (run, k, ctx[run], law) not in cache}
            calls += len({(law, grid[run].index(k)) for run, k, law in need})
            forecast_checkpoints(by_name, need, grid, s, cache, ctx, progress)
            continue
        rounds += 1
        new = contexts(groups, replay_forecast_rule(groups, grid, view(), s).stops, s.context)
        if new == ctx:
            break
        if rounds >= s.max_rounds:
            raise RuntimeError(f"early-stop replay: contexts still changing after {rounds} rounds")
        if progress:
            progress(f"round {rounds}: {sum(new[r] != ctx[r] for r in ctx)} runs' finished siblings changed")
        ctx = new
    fcs = view()
    ours = replay_forecast_rule(groups, grid, fcs, s)
    ours.seconds = time.perf_counter() - t0
    skipped = sum(1 for fl in fcs.values() for f in fl.values() if f.skipped)
    out: dict[str, Any] = score(ours, groups, s.margin)
    out["seconds"] = ours.seconds
    base: dict[str, Any] = {}
    for name in baselines:
        m = replay_patience(groups, s) if name == "patience" else replay_optuna(name, groups, s)
        base[name] = score(m, groups, s.margin)
        base[name]["seconds"] = m.seconds
    out["baselines"] = base
    out["runs"] = len(runs)
    out["group_count"] = len(groups)
    out["checkpoints"] = sorted({len(g) for g in grid.values()})
    out["forecasts"] = sum(len(fl) for fl in fcs.values())
    # which law the calibrated checks used, per checkpoint index (1 = first checkpoint)
    out["law_choice"] = {}
    for (c, law), n in sorted(ours.laws.items()):
        out["law_choice"].setdefault(str(c + 1), {})[law] = n
    out["forecasts_made"] = len(cache)
    out["forecaster_calls"] = calls
    out["context_rounds"] = rounds
    out["forecasts_skipped"] = skipped
    out["settings"] = {k: getattr(s, k) for k in (
        "delta", "margin", "min_points", "first_share", "ratio", "min_calibration", "neighbours", "patience",
        "startup_trials", "context", "pool", "law", "law_score", "law_score_alpha", "law_score_from", "seed")}
    out["notes"] = notes
    return jsonable(out)


def markdown(result: dict[str, Any]) -> str:
    """A table of the result: one row for our rule, one per baseline."""
    st = result["settings"]
    rows = [(f"forecaster (P(final < best x {1 + st['margin']:g}) < {st['delta']:g}, group-wide and local)", result)]
    rows += list(result["baselines"].items())
    head = ("| rule | compute saved | speed-up | regret | false-stop rate | best run stopped | stopped | "
            "90% interval coverage |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows:
        cal = r.get("calibration") or {}
        cov = cal.get("interval90_coverage")
        lines.append(f"| {name} | {r['compute_saved']:.1%} | {r['speedup'] or float('inf'):.2f}x | "
                     f"{r['regret']:.2%} | {r['false_stop_rate']:.1%} | {r['best_runs_stopped']} | {r['stopped']} | "
                     f"{'-' if cov is None else f'{cov:.1%}'} |")
    return "\n".join(lines)


def cli_early_stop(input_path: str, metric: str, law: str = "auto", device: str | None = None, seed: int = 0,
                   as_json: bool = False, settings: EarlyStopSettings | None = None) -> dict[str, Any]:
    """What `forecast backtest --early-stop` runs: read the CSV, replay, print a table or JSON."""
    from forecaster import csvio

    s = settings or EarlyStopSettings()
    s.law, s.seed = law, seed
    s.device = None if device in (None, "auto") else device
    histories, report = csvio.read_histories(input_path, metric)
    for line in report.warnings():
        print(f"warning: {line}", file=sys.stderr)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_early_stop(histories, s, progress=progress)
    result = {"input": str(input_path), "metric": metric, **result}
    if as_json:
        csvio.write_json(result, None)
    else:
        print(markdown(result))
        for n in result["notes"][:5]:
            print(f"note: {n}", file=sys.stderr)
    return result
