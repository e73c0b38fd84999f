"""Writing: each revision (create the forecast run -> delete the superseded one -> tag the source)
and each tag-only update, in a thread pool that stops at the first tracker failure."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from forecaster import tags
from forecaster.errors import RunGone, TrackerError
from forecaster.sync.alerting import Alerts
from forecaster.sync.fitting import Fits
from forecaster.sync.plan import Plan
from forecaster.sync.report import Action, Progress, RunOutcome, gone
from forecaster.sync.runtags import ALERT_KEYS, cooldown_tags, notes_tag, source_tags
from forecaster.sync.settings import SyncSettings
from forecaster.trackers import ForecastRevision, RunInfo, Tracker

log = logging.getLogger("forecaster.sync")

TagUpdate = tuple[RunInfo, dict[str, str | None]]


class Writes:
    """Counts the write calls made on a tracker (the report's `writes`)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.n += n


@dataclass
class Writer:
    """Everything one sync writes with: the tracker, the fits and alerts, and the outcomes it updates."""

    tracker: Tracker
    settings: SyncSettings
    fits: Fits
    alerts: Alerts
    outcomes: dict[str, RunOutcome]
    writes: Writes
    progress: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _plot: Callable | None = field(default=None, init=False, repr=False)

    def write(self, ready: list[Plan], tag_only: list[TagUpdate]) -> None:
        """Revisions in a thread pool (each: create -> tag -> delete old); stop at the first TrackerError."""
        from forecaster.plotting import forecast_png

        self._plot = forecast_png  # imported here, not in each writer thread
        jobs: list[tuple[Callable, object]] = [(self._revise, p) for p in ready]
        jobs += [(self._tag, t) for t in tag_only]
        if not jobs:
            return
        bar = Progress(len(jobs), "writing", self.progress)
        n_workers = max(1, min(self.settings.workers,
                               getattr(self.tracker, "max_write_workers", None) or self.settings.workers))
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="forecast-write") as pool:
            futures = [pool.submit(fn, arg) for fn, arg in jobs]
            try:
                for fut in futures:
                    fut.add_done_callback(lambda f: bar.update())
                wait(futures, return_when=FIRST_EXCEPTION)
                stop_err = next((f.exception() for f in futures if f.done() and f.exception() is not None), None)
                if stop_err is not None:
                    self._stop.set()
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

    @contextlib.contextmanager
    def _guarded(self, r: RunInfo) -> Iterator[None]:
        """A run deleted meanwhile is skipped with the reason; a tracker failure stops all writers."""
        try:
            yield
        except RunGone as e:
            self.outcomes[r.id] = RunOutcome(r, Action.SKIPPED, gone(e))
        except TrackerError:
            self._stop.set()
            raise

    def _revise(self, p: Plan) -> None:
        if self._stop.is_set():
            return
        r, settings = p.run, self.settings
        curves = self.fits.curves[r.id]
        fc = curves[settings.primary]
        h = self.fits.histories[r.id]
        new = source_tags(p, fc, curves, h, settings)
        cooled = self.fits.cooldowns.get(r.id)
        new.update(cooldown_tags(p, cooled))
        new.update(self.alerts.tags.get(r.id, {}))
        new.update(notes_tag(self.outcomes[r.id]))
        lr_steps = lr_values = None
        if p.lr_key and h.schedule is not None:
            lr_steps = fc.steps
            lr_values = np.asarray(h.schedule.lr(fc.steps), dtype=float)
        png = None
        if settings.plots:
            try:
                png = self._plot(h, fc, title=f"{r.name} ({r.id[:8]})")
            except Exception as e:  # noqa: BLE001 - a plot must never block a forecast
                log.warning("%s: plot failed: %s", r.label, e)
        rev = ForecastRevision(
            source=r, input=p.fp, curves=curves, lr_key=p.lr_key, lr_steps=lr_steps, lr_values=lr_values,
            plot_png=png, alerts=list(self.alerts.sent.get(r.id, [])), name=f"{r.name} forecast",
            whatif={} if cooled is None else {ForecastRevision.whatif_key(settings.primary): cooled[0]},
            tags={k: v for k, v in new.items() if v is not None and k != tags.INPUT and not k.startswith(ALERT_KEYS)})
        with self._guarded(r):
            cid = self.tracker.create_forecast(rev)
            self.writes.add()
            # the superseded forecast goes at once: two forecasts of one run are drawn together
            # only for the length of this call (a crash here is repaired by `plan.leftovers`)
            for old in r.forecasts:
                if old != cid:
                    self.tracker.delete_forecast(r, old)
                    self.writes.add()
            if r.id in self.alerts.stops:
                new.update(self._request_stop(r))
            try:
                self.tracker.set_tags(r, {**new, tags.RUN_ID: cid})
                self.writes.add()
            except RunGone:
                with contextlib.suppress(Exception):
                    self.tracker.delete_forecast(r, cid)
                raise
            self.outcomes[r.id].forecast_id = cid

    def _tag(self, item: TagUpdate) -> None:
        if self._stop.is_set():
            return
        r, new = item
        if not new:
            return
        with self._guarded(r):
            self.tracker.set_tags(r, new)
            self.writes.add()

    def _request_stop(self, r: RunInfo) -> dict[str, str]:
        """Ask the tracker to stop `r` (opt-in); the tag that records it, or {} so the next sync retries."""
        outcome = self.outcomes[r.id]
        try:
            outcome.stop = self.tracker.stop_run(r)
            self.writes.add()
        except NotImplementedError as e:
            outcome.stop = f"not stopped: {e}"
            log.warning("%s: %s", r.label, outcome.stop)
            return {}
        except TrackerError as e:  # the forecast still gets written; the stop is retried next sync
            outcome.stop = f"stop request failed (retried next sync): {e}"
            log.warning("%s: %s", r.label, outcome.stop)
            return {}
        return {tags.STOP: "true"}
