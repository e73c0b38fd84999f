"""The summary document of a `predict` call: per run its law, parameters and final value, or why it was skipped."""

from __future__ import annotations

import math
from typing import Any

from forecaster.histories import RunForecast, RunHistory


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summary(histories: list[RunHistory], forecasts: list[RunForecast], *,
            warnings: list[str] = (), settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per run: law, parameters, predicted final value with its interval, or why it was skipped."""
    return assemble_summary(summary_entries(histories, forecasts), warnings=warnings, settings=settings)


def summary_entries(histories: list[RunHistory], forecasts: list[RunForecast]) -> list[dict[str, Any]]:
    """The per-run entries of `summary` (a big input's chunks each add theirs)."""
    runs = []
    for h, f in zip(histories, forecasts):
        entry: dict[str, Any] = {
            "run": f.run, "group": f.group, "metric": f.metric,
            "observed": {"points": int(len(h.steps)),
                         "last_step": int(h.steps[-1]) if len(h.steps) else None,
                         "last_value": _num(float(h.values[-1])) if len(h.values) else None},
            "law": f.law, "params": {k: _num(v) for k, v in f.params.items()},
            "skipped": f.skipped, "notes": list(f.notes),
        }
        if not f.skipped and len(f.steps):
            lo, hi = f.final_interval
            entry["final"] = {"step": int(f.steps[-1]), "p50": _num(f.final), "p10": _num(lo), "p90": _num(hi)}
            entry["horizon_points"] = int(len(f.steps))
        else:
            entry["final"] = None
            entry["horizon_points"] = 0
        runs.append(entry)
    return runs


def assemble_summary(runs: list[dict[str, Any]], *, warnings: list[str] = (),
                     settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary document from its per-run entries."""
    return {
        "settings": settings or {},
        "forecast": sum(1 for r in runs if not r["skipped"] and r["final"]),
        "skipped": [{"run": r["run"], "group": r["group"], "reason": r["skipped"]} for r in runs if r["skipped"]],
        "warnings": list(warnings),
        "runs": runs,
    }
