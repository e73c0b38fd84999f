"""What a stop rule's decisions are worth: compute saved, regret, false stops, calibration."""

from __future__ import annotations

from typing import Any

import numpy as np

from forecaster.earlystop.replay import MethodResult, _outcome, _Run


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
