"""The tracker-agnostic sync: list runs, read what changed, fit per group, write forecasts back.

Data flows one way: `Tracker.list_runs` (one search) -> decide per run from its latest-metric
watermark and config whether anything changed -> read histories of the groups that changed
(concurrently) -> one `Forecaster` fit per metric, runs of a group pooled -> alerts -> per run,
a complete new forecast run, then the source run's ``forecast.*`` tags pointed at it, then the
superseded forecast runs deleted. Nothing here knows which tracker it talks to.

Idempotence: a run's ``forecast.input`` tag holds a fingerprint of everything its forecast was
made from (watermarks of the metric and LR keys, the resolved config, the settings, the
forecaster version); a run whose fingerprint matches is not read and not written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forecaster import __version__, screen
from forecaster.config import ConfigMapping
from forecaster.errors import InputError, LockBusy  # noqa: F401  (re-exported for sync_cli)
from forecaster.histories import RunForecast, RunHistory
from forecaster.join import join
from forecaster.runconfig import SIZE_KEYS, STEPS_KEYS
from forecaster.trackers import (
    FINISHED, TAG_INPUT, TAG_RUN_ID, TAG_STOP, ForecastRevision, RunGone, RunInfo, Series, Tracker, TrackerError,
    fingerprint,
)

log = logging.getLogger("forecaster.sync")
_TAG_KIND = "forecast.kind"  # forecaster.trackers.TAG_KIND

TAG_STATUS = "forecast.status"
TAG_SKIPPED = "forecast.skipped"
TAG_WATERMARK = "forecast.watermark"
TAG_NOTES = "forecast.notes"
# a revision whose finals and bands move less than this share of the band's width is not written
KEEP_SHARE = 0.1
# set while an alert's webhook failed: the run is fitted again next sync (same inputs or not) to retry it
TAG_ALERT_RETRY = "forecast.alert_retry"
# Sampled reads cut a first sync's read but cost accuracy where siblings share per-step noise
# (docs/benchmarks.md, "Sampled reads"): every point by default, sampling on request.
HISTORY_SAMPLE: int | None = None


@dataclass
class SyncSettings:
    """What to read, how to fit and what to write; the CLI and the config file fill it."""

    metrics: tuple[str, ...] = ("loss",)
    lr_keys: tuple[str, ...] = ("learning_rate", "lr")
    group_by: str | None = None  # param/config or tag key whose value splits an experiment into groups
    law: str = "auto"
    device: str | None = None
    seed: int = 0
    include_ended: bool = False  # also forecast finished/failed/killed runs stopped before their plan
    dry_run: bool = False
    force: bool = False  # re-forecast even runs whose inputs did not change
    plots: bool = True
    max_points: int = 500  # horizon points per run
    workers: int = 8  # concurrent writes
    mapping: ConfigMapping = field(default_factory=ConfigMapping)
    alert_settings: Any = None  # forecaster.alerts.AlertSettings
    notify_settings: Any = None  # forecaster.notify.NotifySettings
    forecaster_options: dict[str, Any] = field(default_factory=dict)
    scaling: Any = None  # forecaster.scaling.sync.ScalingSettings: also fit the experiment's scaling law
    history_cache: str | Path | None = None  # SQLite file of read histories (forecaster.cache); None: none
    history_sample: int | None = HISTORY_SAMPLE  # at most this many points per history read in full (None: all)

    def token(self) -> str:
        """What of the settings changes a forecast (part of every run's fingerprint)."""
        target = getattr(self.alert_settings, "target", None)
        return repr((__version__, self.metrics, self.lr_keys, self.group_by, self.law, self.seed,
                     self.max_points, target, sorted(self.forecaster_options.items())))


@dataclass
class RunOutcome:
    """What the sync did with one run."""

    run: RunInfo
    action: str  # "forecast" | "unchanged" | "skipped" | "context"
    reason: str | None = None
    forecast: RunForecast | None = None
    forecast_id: str | None = None
    alerts: list[str] = field(default_factory=list)  # firing alert messages
    stop: str | None = None  # what was done about a stop request (only with --stop-runs)
    notes: list[str] = field(default_factory=list)  # what screening did to its data (dropped points, not pooled)
    kept: bool = False  # the new forecast is within KEEP_SHARE of the drawn one: that one stays

    def line(self) -> str:
        """The one log line for this run."""
        who = self.run.label
        if self.action == "forecast" and self.forecast is not None:
            lo, hi = self.forecast.final_interval
            extra = f"; kept the drawn forecast (within {KEEP_SHARE:.0%} of its band)" if self.kept else ""
            extra += f"; NOTE {'; '.join(self.notes)}" if self.notes else ""
            extra += f"; ALERT {'; '.join(self.alerts)}" if self.alerts else ""
            extra += f"; STOP {self.stop}" if self.stop else ""
            return (f"{who}: {self.forecast.metric} -> {self.forecast.final:.4g} "
                    f"[{lo:.4g}, {hi:.4g}] at step {int(self.forecast.steps[-1])} ({self.forecast.law}){extra}")
        if self.action == "skipped":
            return (f"{who}: skipped: {self.reason}" + (f"; NOTE {'; '.join(self.notes)}" if self.notes else "")
                    + (f"; ALERT {'; '.join(self.alerts)}" if self.alerts else ""))
        return f"{who}: {self.action}" + (f" ({self.reason})" if self.reason else "")


@dataclass
class SyncReport:
    """Counts and timings of one sync (the final summary)."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    writes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    scaling: list = field(default_factory=list)  # forecaster.scaling.sync.ScalingOutcome per scope

    def by(self, action: str) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.action == action]

    @property
    def seen(self) -> int:
        return len(self.outcomes)

    @property
    def skipped(self) -> dict[str, str]:
        return {o.run.id: o.reason or "" for o in self.by("skipped")}

    def summary(self) -> str:
        """One line: runs seen / forecast / unchanged / skipped with reasons / alerts; timings."""
        reasons = Counter((o.reason or "").split(":")[0] for o in self.by("skipped"))
        skip = ", ".join(f"{r} x{n}" for r, n in reasons.most_common())
        alerts = sum(len(o.alerts) for o in self.outcomes)
        stops = sum(1 for o in self.outcomes if o.stop)
        t = self.timings
        times = ", ".join(f"{k} {v:.2f}s" for k, v in t.items() if k != "total")
        verb = "would forecast" if self.dry_run else "forecast"
        kept = sum(1 for o in self.by("forecast") if o.kept)
        return (f"{self.seen} runs seen: {len(self.by('forecast'))} {verb}"
                + (f" ({kept} kept as drawn)" if kept else "") + f", {len(self.by('unchanged'))} unchanged, "
                f"{len(self.by('context'))} ended (context only), {len(self.by('skipped'))} skipped"
                + (f" ({skip})" if skip else "") + f", {alerts} alerts firing"
                + (f", {stops} stop requests" if stops else "") + f"; {self.writes} writes; "
                f"{t.get('total', 0.0):.2f}s ({times})")


# -- locking -----------------------------------------------------------------------------------
def default_lock_path(scope: str) -> Path:
    """Per-scope lock file under the user's cache directory."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "forecaster"
    return base / f"sync-{fingerprint(scope)}.lock"


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an advisory lock (flock) so overlapping cron invocations never sync the same scope at once."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a+") as f:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"another forecast sync holds {p}; not starting a second one") from None
                time.sleep(0.2)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive_locks(paths: list[str | Path], wait_s: float = 0.0) -> Iterator[None]:
    """`exclusive_lock` on every path, taken in sorted order (two syncs sharing some never deadlock)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    with contextlib.ExitStack() as stack:
        for p in sorted({str(Path(x).expanduser()) for x in paths}):
            stack.enter_context(exclusive_lock(p, max(0.0, deadline - time.monotonic())))
        yield


# -- per-run decisions (pure) ------------------------------------------------------------------
def _lookup(run: RunInfo, key: str) -> Any:
    """A param/config or tag value by name; 'params.x' / 'config.x' / 'tags.x' pick the source."""
    if key.startswith(("params.", "config.")):
        return run.config.get(key.split(".", 1)[1])
    if key.startswith("tags."):
        return run.tags.get(key[5:])
    return run.config.get(key, run.tags.get(key))


def group_of(run: RunInfo, group_by: str | None) -> str:
    """The fitting group: the run's experiment, or experiment + the value of `group_by`."""
    if not group_by:
        return run.scope
    v = _lookup(run, group_by)
    return f"{run.scope}/{group_by}={v}" if v is not None else f"{run.scope}/{group_by}=?"


def run_config(run: RunInfo, mapping: ConfigMapping) -> dict[str, Any]:
    """Params/config plus a ``forecast.schedule`` tag, passed through the config file's mapping."""
    cfg = dict(run.config)
    spec = run.tags.get("forecast.schedule")
    if spec and "forecast.schedule" not in cfg:
        cfg["forecast.schedule"] = spec
    return mapping.apply(cfg, run.id, run.name)


def _int_of(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = cfg.get(k)
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x > 0:
            return int(x)
    return None


def _float_of(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        try:
            x = float(cfg.get(k))
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x > 0:
            return x
    return None


@dataclass
class _Plan:
    """A run's resolved inputs before any history is read."""

    run: RunInfo
    group: str
    config: dict[str, Any]
    schedule: Any = None
    total: int | None = None
    lr_key: str | None = None
    fp: str = ""
    reason: str | None = None  # why it cannot be forecast (known without reading)
    size: float | None = None


def plan_run(run: RunInfo, settings: SyncSettings) -> _Plan:
    """Resolve a run's schedule, planned end and fingerprint from what the listing already holds."""
    from forecaster import schedules

    cfg = run_config(run, settings.mapping)
    lr_key = next((k for k in settings.lr_keys if k in run.latest), None)
    marks = [(k, run.latest[k].token()) for k in (*settings.metrics, *settings.lr_keys) if k in run.latest]
    p = _Plan(run, group_of(run, settings.group_by), cfg, lr_key=lr_key, size=_float_of(cfg, SIZE_KEYS),
              fp=fingerprint(settings.token(), marks, sorted((str(k), str(v)) for k, v in cfg.items())))
    primary = settings.metrics[0]
    if primary not in run.latest:
        p.reason = f"no data: metric {primary!r} not logged yet"
        return p
    try:
        p.schedule = schedules.from_config(cfg)
    except InputError as e:
        p.reason = f"bad config: {e}"
        return p
    if p.schedule is None and lr_key is None:
        p.reason = (f"no schedule: no LR metric ({', '.join(settings.lr_keys)}) and no usable schedule "
                    "in the config (HF lr_scheduler_type + max_steps, nanoGPT lr_decay_iters/max_iters, "
                    "or a forecast.schedule spec)")
        return p
    p.total = (p.schedule.total if p.schedule is not None else None) or _int_of(cfg, STEPS_KEYS)
    if p.total is None:
        p.reason = ("no planned end: the LR is logged but the planned last step is unknown "
                    "(log max_steps or a forecast.schedule spec with total=)")
        return p
    if p.total > screen.MAX_STEPS:
        p.reason = f"bad config: planned end {p.total:,} is beyond {screen.MAX_STEPS:,} steps"
    elif p.total <= run.latest[primary].step <= screen.STEP_SLACK * p.total:
        # (a latest step far beyond the plan is a stray write: the run is read and screened)
        p.reason = f"done: reached its planned last step {p.total}"
    return p


def horizon(steps: np.ndarray, total: int, max_points: int) -> np.ndarray:
    """Future steps to forecast: the logging interval (coarser when needed) up to and including `total`."""
    last = int(steps[-1]) if len(steps) else 0
    if total <= last:
        return np.zeros(0, dtype=np.int64)
    interval = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    stride = max(1, interval, math.ceil((total - last) / max(1, max_points - 1)))
    out = np.arange(last + stride, total, stride, dtype=np.int64)
    return np.append(out, np.int64(total))


def build_history(plan: _Plan, metric: str, series: dict[str, Series], target: bool,
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


# -- the sync ----------------------------------------------------------------------------------
class _Progress:
    """tqdm on a terminal, nothing otherwise (per-run lines are logged instead)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", leave=False, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Counted:
    """Counts the write calls made on a tracker (the report's `writes`)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.n += n


def sync(tracker: Tracker, settings: SyncSettings, progress: bool | None = None,
         on_outcome: Any = None) -> SyncReport:
    """One sync of everything in the tracker's scope; raises TrackerError when the tracker fails.

    `on_outcome(RunOutcome)` is called as each run is settled (the CLI logs one line per run).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    report = SyncReport(dry_run=settings.dry_run)
    writes = _Counted()
    t0 = time.perf_counter()
    emit = on_outcome or (lambda o: None)

    if settings.scaling is not None and not settings.dry_run and not tracker.supports_summaries:
        raise InputError(f"sync --scaling: summary runs are not supported by the "
                         f"{tracker.name or type(tracker).__name__} tracker")
    runs = tracker.list_runs()
    # summary runs (any forecast.kind, e.g. the scaling fit) are the engine's own, never sources
    summaries = [r for r in runs if r.tags.get(_TAG_KIND)]
    runs = [r for r in runs if not r.tags.get(_TAG_KIND)]
    report.timings["list"] = time.perf_counter() - t0
    if len(set(settings.metrics)) != len(settings.metrics):
        raise InputError("the same metric is listed twice")

    # leftovers of a crashed sync go first, so the UI never shows a half-written or second forecast
    # (and forecasts of runs deleted since the last sync, which nothing would revise)
    leftovers = _leftovers(runs) + tracker.orphaned_forecasts()
    if leftovers and not settings.dry_run:
        for r, fid in leftovers:  # rare (after a crash only), so one at a time
            tracker.delete_forecast(r, fid)
            writes.add()
        log.info("removed %d forecast runs left by an interrupted sync or of runs since deleted", len(leftovers))

    plans = {r.id: plan_run(r, settings) for r in runs}
    targets: list[_Plan] = []
    outcomes: dict[str, RunOutcome] = {}
    tag_only: list[tuple[RunInfo, dict[str, str | None]]] = []

    for p in plans.values():
        r = p.run
        live = r.tags.get(TAG_RUN_ID)
        if not (r.active or settings.include_ended):
            outcomes[r.id] = RunOutcome(r, "context", r.status)
            continue
        unchanged = (not settings.force and r.tags.get(TAG_INPUT) == p.fp and not r.tags.get(TAG_ALERT_RETRY)
                     and ((r.tags.get(TAG_STATUS) == "ok" and live in r.forecasts)
                          or r.tags.get(TAG_STATUS) == "skipped"))
        if unchanged:
            outcomes[r.id] = RunOutcome(r, "unchanged")
        elif p.reason is not None:
            outcomes[r.id] = RunOutcome(r, "skipped", p.reason)
            tag_only.append((r, _skip_tags(p, p.reason)))
        else:
            targets.append(p)

    target_ids = {p.run.id for p in targets}

    # pooled fits: every run of a group that has work, with LR information, is read as context
    groups = {p.group for p in targets}
    context = [p for p in plans.values() if p.group in groups and p.run.id not in target_ids
               and settings.metrics[0] in p.run.latest and (p.schedule is not None or p.lr_key is not None)
               and not (p.reason or "").startswith(("bad config", "no schedule", "no planned end"))]
    to_read = targets + context
    keys = list(dict.fromkeys([*settings.metrics, *settings.lr_keys]))

    t1 = time.perf_counter()
    series: dict[str, dict[str, Series]] = {}
    bar = _Progress(len(to_read), "reading", progress)
    cache = None
    try:
        if to_read:
            from forecaster import cache as history_cache

            if settings.history_cache is not None:
                cache = history_cache.HistoryCache(settings.history_cache, tracker.describe(),
                                                   settings.history_sample)
                for scope in {r.scope for r in runs}:
                    cache.forget(scope, {r.id for r in runs if r.scope == scope})
            for run, got in history_cache.read_histories(tracker, [p.run for p in to_read], keys, cache,
                                                         settings.history_sample):
                bar.update()
                if isinstance(got, RunGone):
                    if run.id in target_ids:
                        outcomes[run.id] = RunOutcome(run, "skipped", f"gone: run deleted during sync ({got})")
                    continue
                series[run.id] = got
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    report.timings["read"] = time.perf_counter() - t1
    targets = [p for p in targets if p.run.id in series]

    # fit: one Forecaster per metric over all groups with work
    t2 = time.perf_counter()
    curves: dict[str, dict[str, RunForecast]] = {p.run.id: {} for p in targets}
    primary_hist: dict[str, RunHistory] = {}
    histories_by_metric: dict[str, list[RunHistory]] = {}
    notes: dict[str, list[str]] = {p.run.id: [] for p in targets}
    failed: dict[str, str] = {}  # target run -> why its data could not be used at all
    diverged: dict[str, RunHistory] = {}
    for metric in settings.metrics:
        hist, is_target = [], []
        for p in [*targets, *[c for c in context if c.run.id in series]]:
            tgt = p.run.id in curves
            try:
                h = build_history(p, metric, series[p.run.id], tgt, settings)
            except Exception as e:  # noqa: BLE001 - one run's odd data must not stop its experiment
                log.warning("%s: %s unreadable: %s: %s", p.run.label, metric, type(e).__name__, e)
                if tgt and metric == settings.metrics[0]:
                    failed[p.run.id] = f"bad data: {metric} could not be read ({type(e).__name__}: {e})"
                continue
            if h is None:
                continue
            if tgt and (d := screen.describe_dropped(h.meta.get("dropped", {}))):
                notes[p.run.id].append(f"{metric}: {d}")
            if h.meta.get("diverged_at") is not None:
                # a diverged curve is no evidence for its siblings, and has no future to forecast
                if tgt and metric == settings.metrics[0]:
                    diverged[p.run.id] = h
                continue
            hist.append(h)
            is_target.append(tgt)
        for i, factor in screen.level_outliers(hist).items():
            h = hist[i]
            h.group = f"{h.group} (alone: {h.run})"
            if is_target[i]:
                notes[h.run].append(f"{metric}: fitted alone, not pooled: it sits {_factor(factor)} its "
                                    "siblings' at the same steps (a summed loss, or another scale?)")
            else:
                log.info("%s: not pooled as context: %s sits %s its siblings'", h.meta.get("name", h.run),
                         metric, _factor(factor))
        histories_by_metric[metric] = hist
        if not any(is_target):
            continue
        fcs = _fit_contained(hist, settings)
        for h, fc, tgt in zip(hist, fcs, is_target):
            if tgt:
                curves[h.run][metric] = join(h, fc)
                if metric == settings.metrics[0]:
                    primary_hist[h.run] = h
    report.timings["fit"] = time.perf_counter() - t2

    ready: list[_Plan] = []
    broken: list[_Plan] = []  # diverged runs: skipped, but their alerts are still judged
    for p in targets:
        fc = curves[p.run.id].get(settings.metrics[0])
        if p.run.id in failed:
            reason = failed[p.run.id]
        elif p.run.id in diverged:
            at = diverged[p.run.id].meta["diverged_at"]
            reason = f"diverged: {settings.metrics[0]} is NaN/inf from step {at} on"
            primary_hist[p.run.id] = diverged[p.run.id]
            broken.append(p)
        elif fc is None:
            reason = f"no data: metric {settings.metrics[0]!r} has no finite values"
        elif fc.skipped:
            reason = f"not fitted: {fc.skipped}"
        else:
            reason = None
        if reason:
            outcomes[p.run.id] = RunOutcome(p.run, "skipped", reason, notes=notes[p.run.id])
            tag_only.append((p.run, _skip_tags(p, reason)))
            continue
        for m in list(curves[p.run.id]):
            if curves[p.run.id][m].skipped:
                del curves[p.run.id][m]
        ready.append(p)

    # alerts, then writes
    t3 = time.perf_counter()
    alert_tags, alert_sent, firing, stops = _alerts(ready + broken, primary_hist, curves,
                                                    histories_by_metric.get(settings.metrics[0], []), plans,
                                                    settings)
    for p in ready:
        fc = curves[p.run.id][settings.metrics[0]]
        outcomes[p.run.id] = RunOutcome(p.run, "forecast", forecast=fc, alerts=firing.get(p.run.id, []),
                                        stop="would ask the tracker to stop this run" if (
                                            settings.dry_run and p.run.id in stops) else None,
                                        notes=notes[p.run.id])
    for p in broken:
        outcomes[p.run.id].alerts = firing.get(p.run.id, [])
    tag_only = [(r, {**t, **alert_tags.get(r.id, {}), **_notes_tag(outcomes[r.id])}) for r, t in tag_only]

    # a revision no chart could tell from the drawn forecast is not written: one tag write instead
    # of a new forecast run (the check is recorded in forecast.input, so the next sync is quiet)
    kept = {p.run.id for p in ready if not settings.force and not alert_sent.get(p.run.id)
            and p.run.id not in stops and _still_drawn(p, curves[p.run.id], settings)}
    for p in ready:
        if p.run.id in kept:
            outcomes[p.run.id].kept = True
            outcomes[p.run.id].forecast_id = p.run.tags.get(TAG_RUN_ID)
            extra = {**alert_tags.get(p.run.id, {}), **_notes_tag(outcomes[p.run.id])}
            tag_only.append((p.run, {TAG_INPUT: p.fp, **{k: v for k, v in extra.items() if p.run.tags.get(k) != v}}))
    ready = [p for p in ready if p.run.id not in kept]

    if not settings.dry_run:
        _write_all(tracker, settings, ready, curves, primary_hist, alert_tags, alert_sent, tag_only,
                   outcomes, writes, progress, stops)
    report.timings["write"] = time.perf_counter() - t3
    report.writes = writes.n
    report.outcomes = [outcomes[r.id] for r in runs if r.id in outcomes]
    for o in report.outcomes:
        emit(o)
    if settings.scaling is not None:
        t4 = time.perf_counter()
        report.scaling = _scaling(tracker, settings, runs, summaries, plans, outcomes, writes)
        report.writes = writes.n
        report.timings["scaling"] = time.perf_counter() - t4
    report.timings["total"] = time.perf_counter() - t0
    return report


def _scaling(tracker: Tracker, settings: SyncSettings, runs: list[RunInfo], summaries: list[RunInfo],
             plans: dict[str, _Plan], outcomes: dict[str, RunOutcome], writes: _Counted) -> list:
    """The experiment's scaling law from final / forecast final values (no history is read for it)."""
    from forecaster.scaling.sync import sync_scaling

    fresh = {}
    for rid, o in outcomes.items():
        if o.action == "forecast" and o.forecast is not None:
            lo, hi = o.forecast.final_interval
            fresh[rid] = (float(o.forecast.final), float(lo), float(hi))
    gone = {rid for rid, o in outcomes.items() if (o.reason or "").startswith("gone")}
    return sync_scaling(tracker, settings.scaling, [r for r in runs if r.id not in gone], summaries,
                        {rid: p.config for rid, p in plans.items()}, fresh, settings.metrics[0],
                        dry_run=settings.dry_run, force=settings.force, plots=settings.plots,
                        device=settings.device, on_write=writes.add)


def _leftovers(runs: list[RunInfo]) -> list[tuple[RunInfo, str]]:
    """Forecast runs to delete before anything else: incomplete ones, and every complete one but the
    one the source's tags name (or, when they name none of them, the newest). Updates the runs."""
    out = []
    for r in runs:
        keep = r.tags.get(TAG_RUN_ID)
        if keep not in r.forecasts:
            keep = r.forecasts[-1] if r.forecasts else None
        out += [(r, f) for f in r.partial] + [(r, f) for f in r.forecasts if f != keep]
        r.partial = []
        r.forecasts = [keep] if keep else []
    return out


def _fit(hist: list[RunHistory], settings: SyncSettings) -> list[RunForecast]:
    from forecaster.forecast import Forecaster

    fc = Forecaster(law=settings.law, device=settings.device, seed=settings.seed, **settings.forecaster_options)
    return fc.fit(hist).predict()


def _fit_contained(hist: list[RunHistory], settings: SyncSettings) -> list[RunForecast]:
    """All groups in one batched fit; if that fails, each group on its own, so a failure costs only
    the group it happened in (its runs are skipped with the error as reason)."""
    try:
        return _fit(hist, settings)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - contained below, group by group
        log.warning("the batched fit failed (%s: %s); fitting each group on its own", type(e).__name__, e)
    by_group: dict[str, list[int]] = {}
    for i, h in enumerate(hist):
        by_group.setdefault(h.group, []).append(i)
    out: list[RunForecast | None] = [None] * len(hist)
    for group, idx in by_group.items():  # only after a failure: the price of isolating it
        try:
            fcs = _fit([hist[i] for i in idx], settings)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - this group's runs are skipped, the others go on
            log.warning("group %s: fit failed: %s: %s", group, type(e).__name__, e, exc_info=log.isEnabledFor(10))
            fcs = [RunForecast.skip(hist[i].run, group, f"fit failed: {type(e).__name__}: {e}", hist[i].metric)
                   for i in idx]
        for i, fc in zip(idx, fcs):
            out[i] = fc
    return [fc for fc in out if fc is not None]


def _still_drawn(p: _Plan, curves: dict[str, RunForecast], settings: SyncSettings) -> bool:
    """Would the drawn forecast look the same? Every final and its band within KEEP_SHARE of the
    band's width, the same law and end, and the run not yet KEEP_SHARE of the way on from where
    the drawn forecast starts (past that its start lags visibly behind the real curve)."""
    t = p.run.tags
    primary = settings.metrics[0]
    fc = curves[primary]
    made = _watermark_step(t.get(TAG_WATERMARK, ""), primary)
    if (t.get(TAG_STATUS) != "ok" or t.get(TAG_RUN_ID) not in p.run.forecasts or made is None
            or t.get("forecast.final_step") != str(int(fc.steps[-1])) or t.get("forecast.law") != fc.law):
        return False
    for m, c in curves.items():
        pre = "forecast." if m == primary else f"forecast.{m}."
        try:
            old, lo, hi = (float(t[pre + k]) for k in ("final", "final_p10", "final_p90"))
        except (KeyError, ValueError):
            return False
        new_lo, new_hi = c.final_interval
        if max(abs(c.final - old), abs(new_lo - lo), abs(new_hi - hi)) > KEEP_SHARE * (hi - lo):
            return False
    return p.run.latest[primary].step - made <= KEEP_SHARE * (int(fc.steps[-1]) - made)


def _watermark_step(marks: str, metric: str) -> int | None:
    """The step of `metric` in a forecast.watermark tag ('loss@16000,eval_loss@15800')."""
    for part in marks.split(","):
        key, _, step = part.rpartition("@")
        if key == metric and step.isdigit():
            return int(step)
    return None


def _notes_tag(o: RunOutcome) -> dict[str, str | None]:
    """``forecast.notes``: what screening did to the run's data; removed once there is nothing to say."""
    if o.notes:
        text = "; ".join(o.notes)
        return {TAG_NOTES: text if len(text) <= 500 else text[:497] + "..."}
    return {TAG_NOTES: None} if TAG_NOTES in o.run.tags else {}


def _factor(f: float) -> str:
    """'1000x above' / '5x below'."""
    return f"{f:.3g}x above" if f >= 1 else f"{1 / f:.3g}x below"


def _skip_tags(p: _Plan, reason: str) -> dict[str, str | None]:
    """Tags recording why a run was skipped (with its fingerprint, so the next sync stays quiet)."""
    tags: dict[str, str | None] = {TAG_STATUS: "skipped", TAG_SKIPPED: reason, TAG_INPUT: p.fp}
    if TAG_ALERT_RETRY in p.run.tags:  # a skipped run has no alert left to deliver
        tags[TAG_ALERT_RETRY] = None
    return {k: v for k, v in tags.items() if p.run.tags.get(k) != v}


def _alerts(ready: list[_Plan], hist: dict[str, RunHistory], curves: dict[str, dict[str, RunForecast]],
            all_hist: list[RunHistory],
            plans: dict[str, _Plan], settings: SyncSettings
            ) -> tuple[dict[str, dict[str, str | None]], dict[str, list], dict[str, list[str]], set[str]]:
    """Evaluate alert rules on the forecast runs; deliver webhooks (not in a dry run); tags to write.

    The last item: running runs to ask the tracker to stop (opt-in `stop_runs` only; a run whose
    ``forecast.stop_requested`` tag is set was asked before and is never asked twice).
    """
    if not ready:
        return {}, {}, {}, set()
    try:
        from forecaster import alerts as al
        from forecaster import notify
    except ImportError:  # pragma: no cover - alerting not built in this checkout
        return {}, {}, {}, set()
    finished = {rid for rid, p in plans.items() if p.run.status == FINISHED}
    ctx = al.group_context(all_hist, finished=finished)
    by_run, tags_by_run, firing = {}, {}, {}
    for p in ready:
        h = hist[p.run.id]
        fc = curves[p.run.id].get(settings.metrics[0])
        a = al.evaluate_alerts(h, fc, ctx.get(h.group), settings.alert_settings)
        by_run[p.run.id] = a
        tags_by_run[p.run.id] = p.run.tags
        firing[p.run.id] = [f"{x.rule}: {x.message}" for x in a if x.firing]
    ns = settings.notify_settings
    stops: set[str] = set()
    if ns is not None and ns.stop_runs:
        for p in ready:
            asked = str(p.run.tags.get(TAG_STOP, "")).strip().lower() in ("true", "1", "yes")
            wanted = any(x.firing and x.rule in ns.stop_rules for x in by_run[p.run.id])
            if wanted and p.run.active and not asked and not notify.silenced(p.run.tags, "stop"):
                stops.add(p.run.id)
    if settings.dry_run:
        return {}, {}, firing, stops
    outcome = notify.process_alerts(by_run, tags_by_run, settings.notify_settings)
    tags: dict[str, dict[str, str | None]] = {rid: dict(o.tags) for rid, o in outcome.items()}
    sent = {rid: o.sent for rid, o in outcome.items()}
    for rid, o in outcome.items():
        if o.failed:
            tags[rid][TAG_ALERT_RETRY] = f"{len(o.failed)} alert(s) not delivered; retried at the next sync"
        elif TAG_ALERT_RETRY in tags_by_run[rid]:
            tags[rid][TAG_ALERT_RETRY] = None
    # ETA to target as a plain tag when a target is set
    for rid, alerts in by_run.items():
        for x in alerts:
            if x.rule == al.ETA_TO_TARGET and x.value is not None:
                tags[rid]["forecast.eta_step"] = str(int(x.value))
    return tags, sent, firing, stops


def _source_tags(p: _Plan, fc: RunForecast, curves: dict[str, RunForecast], h: RunHistory,
                 settings: SyncSettings) -> dict[str, str | None]:
    """The forecast.* summary on the source run (everything but the forecast run id)."""
    lo, hi = fc.final_interval
    marks = ",".join(f"{k}@{p.run.latest[k].step}" for k in settings.metrics if k in p.run.latest)
    tags: dict[str, str | None] = {
        TAG_STATUS: "ok", TAG_INPUT: p.fp, TAG_WATERMARK: marks, "forecast.metric": fc.metric,
        "forecast.final": f"{fc.final:.6g}", "forecast.final_p10": f"{lo:.6g}", "forecast.final_p90": f"{hi:.6g}",
        "forecast.final_step": str(int(fc.steps[-1])), "forecast.law": fc.law or "",
        "forecast.updated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "forecast.version": __version__,
    }
    if h.schedule is not None:
        with contextlib.suppress(Exception):
            spec = h.schedule.spec()
            tags["forecast.schedule_used"] = spec if len(spec) <= 500 else spec[:497] + "..."
    for m, c in curves.items():
        if m != fc.metric:
            a, b = c.final_interval
            tags[f"forecast.{m}.final"] = f"{c.final:.6g}"
            tags[f"forecast.{m}.final_p10"] = f"{a:.6g}"
            tags[f"forecast.{m}.final_p90"] = f"{b:.6g}"
    if TAG_SKIPPED in p.run.tags:
        tags[TAG_SKIPPED] = None
    return tags


def _request_stop(tracker: Tracker, r: RunInfo, outcome: RunOutcome, writes: _Counted) -> dict[str, str]:
    """Ask the tracker to stop `r` (opt-in); the tag that records it, or {} so the next sync retries."""
    try:
        outcome.stop = tracker.stop_run(r)
        writes.add()
    except NotImplementedError as e:
        outcome.stop = f"not stopped: {e}"
        log.warning("%s: %s", r.label, outcome.stop)
        return {}
    except TrackerError as e:  # the forecast still gets written; the stop is retried next sync
        outcome.stop = f"stop request failed (retried next sync): {e}"
        log.warning("%s: %s", r.label, outcome.stop)
        return {}
    return {TAG_STOP: "true"}


def _write_all(tracker: Tracker, settings: SyncSettings, ready: list[_Plan],
               curves: dict[str, dict[str, RunForecast]], hist: dict[str, RunHistory],
               alert_tags: dict[str, dict[str, str]], alert_sent: dict[str, list], tag_only: list,
               outcomes: dict[str, RunOutcome], writes: _Counted,
               progress: bool, stops: set[str] | frozenset[str] = frozenset()) -> None:
    """Revisions in a thread pool (each: create -> tag -> delete old); stop at the first TrackerError."""
    from forecaster.plotting import forecast_png

    stop = threading.Event()

    @contextlib.contextmanager
    def guarded(r: RunInfo) -> Iterator[None]:
        """A run deleted meanwhile is skipped with the reason; a tracker failure stops all writers."""
        try:
            yield
        except RunGone as e:
            outcomes[r.id] = RunOutcome(r, "skipped", f"gone: run deleted during sync ({e})")
        except TrackerError:
            stop.set()
            raise

    def revise(p: _Plan) -> None:
        if stop.is_set():
            return
        r = p.run
        fc = curves[r.id][settings.metrics[0]]
        h = hist[r.id]
        tags = _source_tags(p, fc, curves[r.id], h, settings)
        tags.update(alert_tags.get(r.id, {}))
        tags.update(_notes_tag(outcomes[r.id]))
        lr_steps = lr_values = None
        if p.lr_key and h.schedule is not None:
            lr_steps = fc.steps
            lr_values = np.asarray(h.schedule.lr(fc.steps), dtype=float)
        png = None
        if settings.plots:
            try:
                png = forecast_png(h, fc, title=f"{r.name} ({r.id[:8]})")
            except Exception as e:  # noqa: BLE001 - a plot must never block a forecast
                log.warning("%s: plot failed: %s", r.label, e)
        rev = ForecastRevision(
            source=r, input=p.fp, curves=curves[r.id], lr_key=p.lr_key, lr_steps=lr_steps, lr_values=lr_values,
            plot_png=png, alerts=list(alert_sent.get(r.id, [])), name=f"{r.name} forecast",
            tags={k: v for k, v in tags.items() if v is not None and k not in (TAG_INPUT,)
                  and not k.startswith("forecast.alert")})
        with guarded(r):
            cid = tracker.create_forecast(rev)
            writes.add()
            # the superseded forecast goes at once: two forecasts of one run are drawn together
            # only for the length of this call (a crash here is repaired by `_leftovers`)
            for old in r.forecasts:
                if old != cid:
                    tracker.delete_forecast(r, old)
                    writes.add()
            if r.id in stops:
                tags.update(_request_stop(tracker, r, outcomes[r.id], writes))
            try:
                tracker.set_tags(r, {**tags, TAG_RUN_ID: cid})
                writes.add()
            except RunGone:
                with contextlib.suppress(Exception):
                    tracker.delete_forecast(r, cid)
                raise
            outcomes[r.id].forecast_id = cid

    def tag(item: tuple[RunInfo, dict]) -> None:
        if stop.is_set():
            return
        r, tags = item
        if not tags:
            return
        with guarded(r):
            tracker.set_tags(r, tags)
            writes.add()

    jobs = [(revise, p) for p in ready] + [(tag, t) for t in tag_only]
    if not jobs:
        return
    bar = _Progress(len(jobs), "writing", progress)
    n_workers = max(1, min(settings.workers, getattr(tracker, "max_write_workers", None) or settings.workers))
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="forecast-write") as pool:
        futures = [pool.submit(fn, arg) for fn, arg in jobs]
        try:
            for fut in futures:
                fut.add_done_callback(lambda f: bar.update())
            wait(futures, return_when=FIRST_EXCEPTION)
            stop_err = next((f.exception() for f in futures if f.done() and f.exception() is not None), None)
            if stop_err is not None:
                stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                raise stop_err
            wait(futures)
            for f in futures:
                if f.exception() is not None:
                    raise f.exception()
        finally:
            bar.close()
