"""A tracker held in memory: the whole interface in a few lines, for unit tests of the engine.

Registered as ``memory`` (``forecast sync --tracker memory --tracking-uri memory://NAME``): runs
live in a `MemoryStore`, one per name in the process, so that successive syncs see what the last
one wrote. Tests log runs into the store and look at what a sync left there; a new adapter's
tests can subclass `MemoryTracker` to try the engine against other behaviours.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from forecaster import tags as tag_keys
from forecaster.errors import InputError, RunGone
from forecaster.trackers.base import Tracker
from forecaster.trackers.records import (
    FAILED, FINISHED, RUNNING, STATES, ForecastRevision, RunInfo, SummaryRevision, Watermark,
)
from forecaster.trackers.series import Series, clean_series


@dataclass
class MemoryRun:
    """One run in the store: a user's run, a forecast run (``source`` set) or a summary run."""

    id: str
    name: str
    scope: str
    status: str = RUNNING
    config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)  # key -> (step, value, time)
    source: str | None = None  # the run a forecast run forecasts
    complete: bool = True  # False: a write that was cut short (listed as partial)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    alerts: list[Any] = field(default_factory=list)
    stop_requests: int = 0


class MemoryStore:
    """The runs of one in-memory tracker, shared by every `MemoryTracker` naming it."""

    _named: ClassVar[dict[str, "MemoryStore"]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.runs: dict[str, MemoryRun] = {}  # in creation order
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)

    @classmethod
    def named(cls, name: str) -> "MemoryStore":
        """The process's store of that name (made on first use)."""
        with cls._named_lock:
            return cls._named.setdefault(name, cls())

    def new_id(self, prefix: str = "run") -> str:
        return f"{prefix}{next(self._ids):04d}"

    def log_run(self, scope: str, name: str,
                metrics: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
                config: Mapping[str, Any] | None = None, status: str = RUNNING, run_id: str | None = None) -> str:
        """Add a user's run with some history (metric key -> (steps, values)); returns its id."""
        if status not in STATES:
            raise InputError(f"memory tracker: status {status!r} is not one of {', '.join(STATES)}")
        with self.lock:
            rid = run_id or self.new_id()
            self.runs[rid] = MemoryRun(rid, name, scope, status, dict(config or {}))
            for key, (steps, values) in (metrics or {}).items():
                self.log(rid, key, steps, values)
            return rid

    def log(self, run_id: str, key: str, steps: Sequence[int], values: Sequence[float]) -> None:
        """Append points to a run's metric (a training loop logging)."""
        with self.lock:
            rows = self.runs[run_id].metrics.setdefault(key, [])
            rows.extend((int(s), float(v), next(self._clock)) for s, v in zip(steps, values))

    def delete(self, run_id: str) -> None:
        with self.lock:
            self.runs.pop(run_id, None)

    def forecasts_of(self, source: str) -> list[MemoryRun]:
        with self.lock:
            return [r for r in self.runs.values() if r.source == source]


class MemoryTracker(Tracker):
    """Runs of a `MemoryStore`; ``experiments`` are scope names (none: every scope)."""

    name = "memory"

    def __init__(self, *, uri: str | None = None, experiments: Sequence[str] = (), filter: str | None = None,
                 store: MemoryStore | None = None, **options: Any) -> None:  # noqa: A002
        super().__init__(uri=uri or "memory://", experiments=experiments, filter=filter, **options)
        if options:
            raise InputError(f"memory tracker: unknown option(s) {', '.join(sorted(options))}")
        if filter:
            raise InputError("memory tracker: --filter is not supported")
        self.store = store if store is not None else MemoryStore.named(self.uri)
        self._orphans: list[tuple[RunInfo, str]] = []

    def _in_scope(self, run: MemoryRun) -> bool:
        return not self.experiments or run.scope in self.experiments

    def _run(self, run_id: str) -> MemoryRun:
        got = self.store.runs.get(run_id)
        if got is None:
            raise RunGone(f"run {run_id} not found")
        return got

    # -- reading -------------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        with self.store.lock:
            runs = [r for r in self.store.runs.values() if self._in_scope(r)]
            out = {r.id: self._info(r) for r in runs if r.source is None}
            self._orphans = []
            for r in runs:
                if r.source is None:
                    continue
                if r.source in out:
                    (out[r.source].forecasts if r.complete else out[r.source].partial).append(r.id)
                elif r.source not in self.store.runs:
                    self._orphans.append((RunInfo(r.source, r.source, r.scope, FAILED), r.id))
            return list(out.values())

    @staticmethod
    def _info(r: MemoryRun) -> RunInfo:
        latest = {}
        for key, rows in r.metrics.items():
            if rows:
                step, value, stamp = max(rows, key=lambda x: (x[0], x[2]))
                latest[key] = Watermark(step, stamp, value)
        return RunInfo(id=r.id, name=r.name, scope=r.scope, status=r.status, latest=latest,
                       config=dict(r.config), tags=dict(r.tags))

    def orphaned_forecasts(self) -> list[tuple[RunInfo, str]]:
        return list(self._orphans)

    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        for info in runs:
            with self.store.lock:
                try:
                    run = self._run(info.id)
                except RunGone as e:
                    yield info, e
                    continue
                rows = {k: list(run.metrics[k]) for k in keys if run.metrics.get(k)}
            out = {}
            for key, points in rows.items():
                steps, values, stamps = zip(*points)
                out[key] = clean_series(steps, values, stamps)
            yield info, out

    # -- writing -------------------------------------------------------------------------------
    def create_forecast(self, revision: ForecastRevision) -> str:
        src = revision.source
        with self.store.lock:
            self._run(src.id)
            fid = self.store.new_id("forecast")
            own = {tag_keys.KIND: tag_keys.KIND_FORECAST, tag_keys.SOURCE: src.id, tag_keys.INPUT: revision.input}
            run = MemoryRun(fid, revision.name or f"{src.name} forecast", src.scope, status=FINISHED,
                            tags={**own, **revision.tags}, source=src.id, alerts=list(revision.alerts))
            for key, steps, values in revision.series():
                run.metrics[key] = [(int(s), float(v), 0) for s, v in zip(steps, values)]
            if revision.plot_png:
                run.artifacts[revision.plot_name] = revision.plot_png
            self.store.runs[fid] = run
            return fid

    def set_tags(self, run: RunInfo, tags: Mapping[str, str | None]) -> None:
        """Upsert tags; a None value deletes the tag."""
        with self.store.lock:
            target = self._run(run.id).tags
            for k, v in tags.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = str(v)

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        with self.store.lock:
            got = self.store.runs.get(forecast_id)
            if got is not None and got.source is None:
                raise InputError(f"refusing to delete run {forecast_id}: it is not a forecast run of {run.label}")
            self.store.delete(forecast_id)

    def stop_run(self, run: RunInfo) -> str:
        """Count a stop request on the run (its status is left to the training process)."""
        with self.store.lock:
            self._run(run.id).stop_requests += 1
        self.set_tags(run, {tag_keys.STOP: "true"})
        return f"asked run {run.label} to stop"

    def create_summary(self, revision: SummaryRevision) -> str:
        with self.store.lock:
            sid = self.store.new_id("summary")
            self.store.runs[sid] = MemoryRun(
                sid, revision.name, revision.scope, status=FINISHED, config=dict(revision.params),
                tags={**revision.tags, tag_keys.KIND: revision.kind, tag_keys.INPUT: revision.input},
                metrics={k: [(0, float(v), 0)] for k, v in revision.metrics.items() if np.isfinite(v)},
                artifacts=dict(revision.artifacts))
            return sid

    def delete_summary(self, summary: RunInfo) -> None:
        self.store.delete(summary.id)
