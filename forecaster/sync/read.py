"""Reading: the histories of the runs with work and their context (through the local cache), and
one screened `RunHistory` per run and metric from what was read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecaster import screen
from forecaster.errors import RunGone
from forecaster.histories import RunHistory
from forecaster.sync.lawmemo import LawMemo
from forecaster.sync.plan import Plan, horizon, unchanged
from forecaster.sync.report import Action, Progress, RunOutcome, gone
from forecaster.sync.settings import SyncSettings
from forecaster.trackers import RunInfo, Series, Tracker, Watermark, fingerprint


@dataclass
class Reads:
    """What the read step got: series per run and key, the targets deleted before they were read,
    and the targets under a stray watermark that the read showed unchanged (context only)."""

    series: dict[str, dict[str, Series]] = field(default_factory=dict)
    gone: dict[str, RunOutcome] = field(default_factory=dict)
    settled: dict[str, RunOutcome] = field(default_factory=dict)
    laws: LawMemo | None = None  # the law choices remembered with the histories (law="auto")


def restamp(p: Plan, series: dict[str, Series]) -> None:
    """A run whose listed watermark is a stray step: its watermarks become the last plausible point
    read, and its fingerprint includes them (the listing alone cannot show its progress)."""
    real = []
    for key in p.stray:
        s = series.get(key)
        if s is not None and (ok := np.flatnonzero(s.steps <= p.stray_above)).size:
            p.run.latest[key] = Watermark(int(s.steps[ok[-1]]), 0, float(s.values[ok[-1]]))
        real.append((key, p.run.latest[key].token()))
    p.fp = fingerprint(p.fp, real)


def read(tracker: Tracker, settings: SyncSettings, runs: list[RunInfo], targets: list[Plan],
         context: list[Plan], progress: bool) -> Reads:
    """Read the metric and LR keys of targets and context (the cache first, when there is one)."""
    to_read = targets + context
    target_ids = {p.run.id for p in targets}
    keys = list(dict.fromkeys([*settings.metrics, *settings.lr_keys]))
    out = Reads()
    bar = Progress(len(to_read), "reading", progress)
    cache = None
    try:
        if to_read:
            from forecaster import cache as history_cache

            if settings.history_cache is not None:
                cache = history_cache.HistoryCache(settings.history_cache, tracker.describe(),
                                                   settings.samples())
                for scope in {r.scope for r in runs}:
                    cache.forget(scope, {r.id for r in runs if r.scope == scope})
                if settings.law == "auto" and cache.db is not None:
                    out.laws = LawMemo(cache.path, cache.ident, cache.sample, settings.token())
                    out.laws.known = cache.get_laws(out.laws.prefix())
            stray = {p.run.id: p for p in to_read if p.stray}
            for run, got in history_cache.read_histories(tracker, [p.run for p in to_read], keys, cache,
                                                         settings.samples(),
                                                         {i: p.stray_above for i, p in stray.items()}):
                bar.update()
                if isinstance(got, RunGone):
                    if run.id in target_ids:
                        out.gone[run.id] = RunOutcome(run, Action.SKIPPED, gone(got))
                    continue
                out.series[run.id] = got
                if run.id in stray:
                    restamp(stray[run.id], got)
                    if run.id in target_ids and unchanged(stray[run.id], settings, checked=True):
                        out.settled[run.id] = RunOutcome(run, Action.UNCHANGED)
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    return out


def build_history(plan: Plan, metric: str, series: dict[str, Series], target: bool,
                  settings: SyncSettings) -> RunHistory | None:
    """A RunHistory from read series: non-finite points dropped but counted; LR from the logged key."""
    from forecaster import schedules

    s = series.get(metric)
    if s is None or not len(s):
        return None
    pts = screen.screen_points(s.steps, s.values, plan.total)
    meta: dict[str, Any] = {"name": plan.run.name, "dropped": dict(pts.dropped)}
    if pts.nonfinite_steps:
        meta["nonfinite_steps"] = pts.nonfinite_steps
    if pts.diverged_at is not None:
        meta["diverged_at"] = pts.diverged_at
    steps, values = pts.steps, pts.values
    lr_steps = lr_values = None
    if plan.lr_key and plan.lr_key in series:
        lr = series[plan.lr_key]
        lp = screen.screen_points(lr.steps, lr.values, plan.total)
        good = lp.values >= 0
        if lp.dropped:
            meta["dropped"] = {f"{k} ({plan.lr_key})": v for k, v in lp.dropped.items()} | meta["dropped"]
        if good.any():
            lr_steps, lr_values = lp.steps[good], lp.values[good]
    sched = plan.schedule
    if sched is None and lr_steps is not None:
        # no planned shape: the logged LR, held at its last value to the planned end
        sched = schedules.from_points(lr_steps, lr_values, total=plan.total)
        meta["lr_assumed_constant_after"] = int(lr_steps[-1])
    hz = horizon(steps, plan.total, settings.max_points) if target and plan.total else None
    return RunHistory(plan.run.id, steps, values, group=plan.group, lr_steps=lr_steps, lr_values=lr_values,
                      schedule=sched, horizon=hz, size=plan.size, metric=metric, meta=meta)
