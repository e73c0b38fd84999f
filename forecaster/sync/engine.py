"""The tracker-agnostic sync: list runs, plan, read what changed, fit per group, write forecasts back.

Data flows one way, one step each (`plan`, `read`, `fitting`, `alerting`, `writer`): `Tracker.list_runs`
(one search) -> decide per run from its latest-metric watermark and config whether anything changed
-> read histories of the groups that changed (concurrently) -> one `Forecaster` fit per metric, runs
of a group pooled -> alerts -> per run, a complete new forecast run, then the source run's
``forecast.*`` tags pointed at it, then the superseded forecast runs deleted. Nothing here knows
which tracker it talks to.

Idempotence: a run's ``forecast.input`` tag holds a fingerprint of everything its forecast was
made from (watermarks of the metric and LR keys, the resolved config, the settings, the
forecaster version); a run whose fingerprint matches is not read and not written.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from forecaster import tags
from forecaster.errors import InputError
from forecaster.sync.alerting import Alerts, judge_alerts
from forecaster.sync.fitting import Fits, fit
from forecaster.sync.plan import Plan, leftovers, triage
from forecaster.sync.read import read
from forecaster.sync.report import Action, RunOutcome, SkipKind, SyncReport
from forecaster.sync.runtags import notes_tag, skip_tags, still_drawn
from forecaster.sync.settings import SyncSettings
from forecaster.sync.writer import TagUpdate, Writer, Writes
from forecaster.trackers import RunInfo, Tracker

log = logging.getLogger("forecaster.sync")


@dataclass
class Listing:
    """One search of the tracker: the source runs, and the engine's own summary runs."""

    runs: list[RunInfo]
    summaries: list[RunInfo]  # any forecast.kind (e.g. the scaling fit): never sources


def list_runs(tracker: Tracker) -> Listing:
    """The runs in the tracker's scope, summary runs set apart."""
    runs = tracker.list_runs()
    return Listing([r for r in runs if not r.tags.get(tags.KIND)], [r for r in runs if r.tags.get(tags.KIND)])


def clear_leftovers(tracker: Tracker, runs: list[RunInfo], settings: SyncSettings, writes: Writes) -> None:
    """Delete forecast runs a crashed sync left half-written or second, and those of deleted runs."""
    found = leftovers(runs) + tracker.orphaned_forecasts()
    if found and not settings.dry_run:
        for r, fid in found:  # rare (after a crash only), so one at a time
            tracker.delete_forecast(r, fid)
            writes.add()
        log.info("removed %d forecast runs left by an interrupted sync or of runs since deleted", len(found))


def settle(fits: Fits, alerts: Alerts, outcomes: dict[str, RunOutcome], tag_only: list[TagUpdate],
           settings: SyncSettings) -> tuple[list[Plan], list[TagUpdate]]:
    """Outcomes of the fitted runs; the revisions to write and every tag-only update (`tag_only`,
    the plan's, with those of the runs skipped or kept here added).

    A revision no chart could tell from the drawn forecast is not written: one tag write instead of
    a new forecast run (the check is recorded in forecast.input, so the next sync is quiet).
    """
    tag_only = list(tag_only)
    for p, skip in fits.skipped:
        outcomes[p.run.id] = RunOutcome(p.run, Action.SKIPPED, skip, notes=fits.notes[p.run.id])
        tag_only.append((p.run, skip_tags(p, skip)))
    for p in fits.ready:
        fc = fits.curves[p.run.id][settings.primary]
        outcomes[p.run.id] = RunOutcome(p.run, Action.FORECAST, forecast=fc, alerts=alerts.firing.get(p.run.id, []),
                                        stop="would ask the tracker to stop this run" if (
                                            settings.dry_run and p.run.id in alerts.stops) else None,
                                        notes=fits.notes[p.run.id])
    for p in fits.broken:
        outcomes[p.run.id].alerts = alerts.firing.get(p.run.id, [])
    tag_only = [(r, {**t, **alerts.tags.get(r.id, {}), **notes_tag(outcomes[r.id])}) for r, t in tag_only]
    kept = {p.run.id for p in fits.ready if not settings.force and not alerts.sent.get(p.run.id)
            and p.run.id not in alerts.stops and still_drawn(p, fits.curves[p.run.id], settings)}
    for p in fits.ready:
        if p.run.id in kept:
            outcomes[p.run.id].kept = True
            outcomes[p.run.id].forecast_id = p.run.tags.get(tags.RUN_ID)
            extra = {**alerts.tags.get(p.run.id, {}), **notes_tag(outcomes[p.run.id])}
            tag_only.append((p.run, {tags.INPUT: p.fp,
                                     **{k: v for k, v in extra.items() if p.run.tags.get(k) != v}}))
    return [p for p in fits.ready if p.run.id not in kept], tag_only


def sync(tracker: Tracker, settings: SyncSettings, progress: bool | None = None,
         on_outcome: Callable[[RunOutcome], object] | None = None) -> SyncReport:
    """One sync of everything in the tracker's scope; raises TrackerError when the tracker fails.

    `on_outcome(RunOutcome)` is called as each run is settled (the CLI logs one line per run).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    report = SyncReport(dry_run=settings.dry_run)
    writes = Writes()
    t0 = time.perf_counter()

    if settings.scaling is not None and not settings.dry_run and not tracker.supports_summaries:
        raise InputError(f"sync --scaling: summary runs are not supported by the "
                         f"{tracker.name or type(tracker).__name__} tracker")
    listing = list_runs(tracker)
    runs = listing.runs
    report.timings["list"] = time.perf_counter() - t0
    if len(set(settings.metrics)) != len(settings.metrics):
        raise InputError("the same metric is listed twice")

    # leftovers of a crashed sync go first, so the UI never shows a half-written or second forecast
    clear_leftovers(tracker, runs, settings, writes)
    plan = triage(runs, settings)
    outcomes = plan.outcomes

    t1 = time.perf_counter()
    reads = read(tracker, settings, runs, plan.targets, plan.context, progress)
    outcomes.update(reads.gone)
    outcomes.update(reads.settled)  # checked under a stray watermark: unchanged, context for the rest
    plan.context += [p for p in plan.targets if p.run.id in reads.settled]
    plan.targets = [p for p in plan.targets if p.run.id not in reads.settled]
    report.timings["read"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    fits = fit(settings, plan.targets, plan.context, reads.series, reads.laws)
    report.timings["fit"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    alerts = judge_alerts(fits.ready + fits.broken, fits, plan.plans, settings)
    ready, tag_only = settle(fits, alerts, outcomes, plan.tag_only, settings)
    if not settings.dry_run:
        Writer(tracker, settings, fits, alerts, outcomes, writes, progress).write(ready, tag_only)
    report.timings["write"] = time.perf_counter() - t3
    report.writes = writes.n
    report.outcomes = [outcomes[r.id] for r in runs if r.id in outcomes]
    for o in report.outcomes:
        if on_outcome is not None:
            on_outcome(o)
    if settings.scaling is not None:
        t4 = time.perf_counter()
        report.scaling = _scaling(tracker, settings, listing, plan.plans, outcomes, writes)
        report.writes = writes.n
        report.timings["scaling"] = time.perf_counter() - t4
    report.timings["total"] = time.perf_counter() - t0
    return report


def _scaling(tracker: Tracker, settings: SyncSettings, listing: Listing, plans: dict[str, Plan],
             outcomes: dict[str, RunOutcome], writes: Writes) -> list:
    """The experiment's scaling law from final / forecast final values (no history is read for it)."""
    from forecaster.scaling.sync import sync_scaling

    fresh = {}
    for rid, o in outcomes.items():
        if o.action is Action.FORECAST and o.forecast is not None:
            lo, hi = o.forecast.final_interval
            fresh[rid] = (float(o.forecast.final), float(lo), float(hi))
    gone = {rid for rid, o in outcomes.items() if o.skip is not None and o.skip.kind is SkipKind.GONE}
    return sync_scaling(tracker, settings.scaling, [r for r in listing.runs if r.id not in gone], listing.summaries,
                        {rid: p.config for rid, p in plans.items()}, fresh, settings.primary,
                        dry_run=settings.dry_run, force=settings.force, plots=settings.plots,
                        device=settings.device, on_write=writes.add)
