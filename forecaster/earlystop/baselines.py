"""The baselines our rule is compared with, replayed on the same runs: Optuna's pruners and patience.

Optuna's MedianPruner, SuccessiveHalvingPruner and HyperbandPruner run through their real
ask/report/should_prune/tell API on an in-memory study per group; patience is the classic rule.
"""

from __future__ import annotations

import time

import numpy as np

from forecaster import DISTRIBUTION
from forecaster.earlystop.replay import MethodResult, _Run
from forecaster.earlystop.settings import EarlyStopSettings
from forecaster.errors import InputError

MAX_REPORTS = 200  # baselines see at most this many evenly spaced logged steps per run
BASELINES = ("median", "successive_halving", "hyperband", "patience")


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


def replay_baseline(name: str, groups: dict[str, list[_Run]], s: EarlyStopSettings) -> MethodResult:
    """One baseline by name (an Optuna pruner or ``patience``)."""
    return replay_patience(groups, s) if name == "patience" else replay_optuna(name, groups, s)
