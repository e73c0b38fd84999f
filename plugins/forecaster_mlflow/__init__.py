"""MLflow adapter for `forecast sync`: reads runs with MlflowClient, writes forecasts as runs beside them.

Every call names its run explicitly through `MlflowClient`; the fluent API (`mlflow.start_run`,
`mlflow.log_*`) is never used, because resuming a user's run rewrites its end time and status.
Source runs only ever receive tags (`log_batch` with tags leaves status and end time alone). The
forecast lives in a top-level run named "<run> forecast", linked by ``forecast.source_run`` and
drawn in its source's colour, that logs the predicted curve under the source's metric keys at
future steps: the experiment's default chart view overlays it on the real curve with no clicks
(a child run would stay collapsed, and undrawn, under its parent). The p10-p90 band keys would
land in charts of their own there, so each experiment also gets one shared chart view of ours
(`band_view_state`) that draws them on the metric's own chart; `scope_url` links to it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import zlib
from base64 import b64decode, b64encode
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np

from forecaster.errors import InputError
from forecaster.redact import mask_uri, redact
from forecaster.trackers import (
    FAILED, FINISHED, KILLED, KIND_FORECAST, LEGACY_TAG_SOURCE, RUNNING, TAG_KIND, TAG_SOURCE, TAG_STOP,
    ForecastRevision, RunGone,
    RunInfo, Series, Tracker, TrackerError, TrackerOption, Watermark, canonical_uri, clean_series,
)

log = logging.getLogger(__name__)

__all__ = ["MlflowTracker"]

PARENT_TAG = "mlflow.parentRunId"  # forecasts written by earlier versions were child runs
COLOR_TAG = "mlflow.runColor"  # the UI draws a run in this colour instead of one hashed from its id
KIND_TAG = "mlflow.experimentKind"  # MLflow 3 opens an experiment without it on the GenAI overview
KIND_TRAINING = "custom_model_development"
# A shared view lives in an experiment tag under this prefix and opens with ?viewStateShareKey=<key>.
# Views the UI's Share button writes are keyed by a hash, so a fixed word of ours cannot collide
# with them, and only this one tag is ever written or rewritten by the sync.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "forecast-bands"
VIEW_TAG = VIEW_TAG_PREFIX + VIEW_KEY
# The MLflow UI's run palette and hash (getStableColorForRun): a forecast takes its source's colour.
_PALETTE = ("#a6630c", "#c83243", "#b45091", "#8a63bf", "#434a93", "#137dae", "#04867d", "#308613", "#facb66",
            "#1f272d", "#445461", "#5f7281", "#8396a5", "#93320b", "#be501e", "#de7921", "#f2be88", "#115026",
            "#277c43", "#3ba65e", "#8ddda8", "#9e102c", "#c82d4c", "#e65b77", "#f792a6", "#0e538b", "#2272b4",
            "#4299e0", "#8acaff")
_STATUS = {"RUNNING": RUNNING, "SCHEDULED": RUNNING, "FINISHED": FINISHED, "FAILED": FAILED,
           "KILLED": KILLED}
# MLflow retries a refused connection 7 times with a 2 s backoff factor by default (minutes):
# a cron job should fail within seconds and try again at its next tick. Users may override.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
PAGE = 1000
# metrics one log_batch may carry; the server stores them in one transaction (all drawn or none)
MAX_BATCH = 1000
# MLflow's sampled multi-run history (GetMetricHistoryBulkInterval), the route its UI charts use;
# the server's limits: 100 runs per request, at most 2,500 points per run
BULK_ROUTE = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
BULK_RUNS = 100
BULK_MAX_RESULTS = 2500
BULK_ROWS = 20_000  # rows per answer we ask for at most (100 runs x 2,500 rows timed out on loopback)
BULK_WINDOWS = 20  # exact windows per history at most (50,000 steps); longer ranges are read whole


class _NoBulkRoute(Exception):
    """The server (or store) cannot answer the sampled history route: read full histories instead."""


def _json_float(v: Any) -> float:
    # proto JSON writes non-finite doubles as strings ("NaN", "Infinity")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
MAX_TAG_VALUE = 5000  # MLflow 2.x rejects longer tag values (3.x: 8000)


def run_color(run_id: str, tags: Mapping[str, str] | None = None) -> str:
    """The colour the MLflow UI draws a run in: its own ``mlflow.runColor`` tag, else a hash of its id."""
    if tags and tags.get(COLOR_TAG):
        return tags[COLOR_TAG]
    a = b = 0
    for ch in run_id:
        a = (a + ord(ch)) % 255
        b = (b + a) % 255
    return _PALETTE[(a | (b << 8)) % len(_PALETTE)]


def _is_gone(err: BaseException) -> bool:
    """True when MLflow refused because the run is deleted or does not exist."""
    code = getattr(err, "error_code", "")
    text = str(err)
    return code == "RESOURCE_DOES_NOT_EXIST" or "must be in the 'active' state" in text or (
        "not found" in text.lower() and "run" in text.lower())


class MlflowTracker(Tracker):
    """MLflow experiments as the sync engine sees them (`--tracking-uri`, else $MLFLOW_TRACKING_URI)."""

    name = "mlflow"
    options = ()

    def __init__(self, *, uri: str | None = None, experiments: Sequence[str] = (), filter: str | None = None,
                 workers: int = 8, **options: Any) -> None:  # noqa: A002
        super().__init__(uri=uri, experiments=experiments, filter=filter, **options)
        if options:
            raise InputError(f"mlflow tracker: unknown option(s) {', '.join(sorted(options))}")
        if not self.experiments:
            raise InputError("mlflow tracker: give at least one --experiment (name or id)")
        if any(not isinstance(e, str) or not e.strip() for e in self.experiments):
            raise InputError("mlflow tracker: an experiment name is empty")
        if isinstance(workers, bool) or not isinstance(workers, (int, str)) or not str(workers).strip().isdigit() \
                or int(workers) < 1:
            raise InputError(f"[tracker] workers must be a whole number >= 1, got {workers!r}")
        for k, v in _HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
        import mlflow  # noqa: F401 - lazy: the CLI loads adapter classes without their clients
        from mlflow.tracking import MlflowClient

        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if not self.uri:
            raise InputError("mlflow tracker: give --tracking-uri or set MLFLOW_TRACKING_URI")
        # before the client sees it: a malformed URI makes it (and requests) quote it, password and all
        self.canonical_uri = canonical_uri(self.uri)
        _check_local_store(self.uri, self.canonical_uri)
        self.workers = int(workers)
        if not self.uri.startswith(("http://", "https://", "databricks")):
            self.max_write_workers = 1  # a local store (sqlite:///, file:) takes one writer at a time
        self.client = MlflowClient(tracking_uri=self.uri)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mlflow-read")
        self._exp_ids: list[str] | None = None
        self._orphans: list[tuple[RunInfo, str]] = []
        self._prepared: set[str] = set()  # experiments whose kind and band view this sync has seen to
        self._unprepared: set[str] = set()  # experiments where that failed
        self._view_keys: dict[str, frozenset[str]] = {}  # experiment -> metric keys its band view draws
        self._exp_lock = threading.Lock()  # forecasts of one experiment may be written concurrently
        self._bulk: bool | None = None  # does the server answer the sampled history route? (None: not tried)

    # -- helpers ---------------------------------------------------------------------------
    def describe(self) -> str:
        return f"mlflow {_safe_uri(self.uri)} experiments={','.join(self.experiments)}"

    def identity(self) -> list[str]:
        """One key per experiment: the canonical URI and the experiment's id (names are resolved)."""
        return sorted({f"mlflow|{self.canonical_uri}|experiment:{i}" for i in self.experiment_ids()})

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one client call; map refusals to RunGone and everything else to one clear TrackerError."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            if _is_gone(e):
                raise RunGone(f"{what}: {_first_line(e)}") from None
            unreachable = _unreachable(str(e))
            if unreachable:
                raise TrackerError(f"cannot reach MLflow at {_safe_uri(self.uri)} ({what}): {unreachable}") from None
            raise TrackerError(f"MLflow at {_safe_uri(self.uri)} failed on {what}: {_first_line(e)}") from None
        except OSError as e:  # requests' ConnectionError is an OSError
            raise TrackerError(f"cannot reach MLflow at {_safe_uri(self.uri)} ({what}): {_first_line(e)}") from None

    def experiment_ids(self) -> list[str]:
        """The experiments in scope as ids (names resolved once per sync)."""
        if self._exp_ids is None:
            ids = []
            for ref in self.experiments:
                exp = self._call(f"looking up experiment {ref!r}", self._lookup, ref)
                if exp is None:
                    raise InputError(f"mlflow: experiment {ref!r} not found at {_safe_uri(self.uri)}")
                if getattr(exp, "lifecycle_stage", "active") == "deleted":
                    raise InputError(f"mlflow: experiment {ref!r} (id {exp.experiment_id}) is deleted at "
                                     f"{_safe_uri(self.uri)}; restore it or take it out of the sync")
                ids.append(exp.experiment_id)
            self._exp_ids = ids
        return self._exp_ids

    def _lookup(self, ref: str):
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(ref)
        if exp is None and ref.isdigit():
            try:
                exp = self.client.get_experiment(ref)
            except MlflowException as e:
                if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
        return exp

    def _search(self, filter_string: str, user: bool = False) -> list:
        """Every active run matching `filter_string`; `user`: it is the user's --filter (bad one: exit 2)."""
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        def page_of(token: str | None):
            try:
                return self.client.search_runs(self.experiment_ids(), filter_string=filter_string,
                                               run_view_type=ViewType.ACTIVE_ONLY, max_results=PAGE,
                                               page_token=token)
            except MlflowException as e:
                if user and getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE":
                    raise InputError(f"--filter {filter_string!r} is not a valid MLflow run filter: "
                                     f"{_first_line(e)}") from None
                raise

        out, token = [], None
        while True:
            page = self._call("searching runs", page_of, token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        if self.uri and self.uri.startswith(("http://", "https://")):
            return f"{_safe_uri(self.uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return None

    def scope_url(self, scope: str) -> str | None:
        """The experiment's training-runs chart view where forecasts and bands are drawn.

        That is our shared band view when the experiment has it, else the plain chart view, which
        still draws each forecast continuing its run (only the band is missing there).
        """
        if not (self.uri and self.uri.startswith(("http://", "https://"))):
            return None
        if scope not in self._view_keys:
            try:
                self._view_keys[scope] = _view_keys(self.client.get_experiment(scope).tags.get(VIEW_TAG))
            except Exception as e:  # noqa: BLE001 - only the link is at stake
                log.debug("could not read the views of experiment %s: %s", scope, _first_line(e))
        return f"{_safe_uri(self.uri).rstrip('/')}/{chart_view_path(scope, band=bool(self._view_keys.get(scope)))}"

    def _prepare_experiment(self, scope: str, keys: Sequence[str]) -> None:
        """Before the first forecast into an experiment: its kind, and a band view drawing `keys`.

        MLflow 3 opens an experiment without a kind on the GenAI overview, so one with no kind is
        marked as model training; one the user (or MLflow) gave a kind keeps it. The band view tag
        is ours alone: written when missing, rewritten only to add keys it does not draw yet.
        Both are cosmetic, so a failure is logged and the forecast goes on.
        """
        with self._exp_lock:
            if scope in self._unprepared or (
                    scope in self._prepared and set(keys) <= self._view_keys.get(scope, frozenset())):
                return
            self._prepared.add(scope)
            try:
                tags = self.client.get_experiment(scope).tags
                if not tags.get(KIND_TAG):
                    self.client.set_experiment_tag(scope, KIND_TAG, KIND_TRAINING)
                have = _view_keys(tags.get(VIEW_TAG))
                if VIEW_TAG in tags and not have:
                    # not a state we wrote (a hand-made tag under our key?): leave it as it is
                    self._view_keys[scope] = frozenset()
                    self._unprepared.add(scope)
                    return
                want = have | set(keys)
                if want != have:
                    self.client.set_experiment_tag(scope, VIEW_TAG, encode_view_state(band_view_state(sorted(want))))
                self._view_keys[scope] = frozenset(want)
            except Exception as e:  # noqa: BLE001 - cosmetic; the write of the forecast reports real failures
                self._unprepared.add(scope)  # once per sync: a refusal (permissions) would only repeat
                log.debug("could not prepare experiment %s for the UI: %s", scope, _first_line(e))

    # -- reading ---------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        """One paged search of the experiments (two when a user filter would hide forecast runs)."""
        runs = self._search(self.filter or "", user=bool(self.filter))
        if self.filter:
            # forecast and summary runs (any forecast.kind) would be hidden by the user's filter
            runs += self._search(f"tags.`{TAG_KIND}` LIKE '%'")
        sources: dict[str, RunInfo] = {}
        forecast_runs: list[tuple[int, str, str, bool, str]] = []  # (start, source, id, complete, experiment)
        seen = set()
        for r in runs:
            rid = r.info.run_id
            if rid in seen:
                continue
            seen.add(rid)
            tags = dict(r.data.tags)
            if tags.get(TAG_KIND) == KIND_FORECAST:
                src = tags.get(TAG_SOURCE) or tags.get(LEGACY_TAG_SOURCE) or tags.get(PARENT_TAG)
                if src:
                    forecast_runs.append((r.info.start_time or 0, src, rid, r.info.status == "FINISHED",
                                          r.info.experiment_id))
                continue
            latest = {m.key: Watermark(int(m.step), int(m.timestamp), float(m.value))
                      for m in r.data._metric_objs}
            sources[rid] = RunInfo(
                id=rid, name=r.info.run_name or rid, scope=r.info.experiment_id,
                status=_STATUS.get(r.info.status, FAILED), latest=latest, config=dict(r.data.params),
                tags=tags, url=self.run_url(r.info.experiment_id, rid),
                extra={"end_time": r.info.end_time})
        for _, src, rid, complete, _ in sorted(forecast_runs):
            if src in sources:
                (sources[src].forecasts if complete else sources[src].partial).append(rid)
        # a source missing from the listing may only be hidden by the filter (or by a page that
        # shifted under a concurrent delete): only one the tracker confirms gone is an orphan
        missing = {src for _, src, _, _, _ in forecast_runs if src not in sources}
        gone = missing - self._active(missing) if missing else set()
        self._orphans = [(RunInfo(id=src, name=src, scope=exp, status=FAILED), rid)
                         for _, src, rid, _, exp in forecast_runs if src in gone]
        return list(sources.values())

    def _active(self, run_ids: set[str]) -> set[str]:
        """Which of `run_ids` are active runs of the experiments (searched by id, 100 at a time)."""
        ids, alive = sorted(run_ids), set()
        try:
            for i in range(0, len(ids), 100):
                chunk = ", ".join(f"'{x}'" for x in ids[i:i + 100] if x.isalnum())
                if chunk:
                    alive.update(r.info.run_id for r in self._search(f"attributes.run_id IN ({chunk})"))
        except TrackerError as e:  # a server without `run_id IN`: keep every forecast rather than guess
            log.debug("could not check which source runs are deleted: %s", e)
            return set(run_ids)
        return alive

    def orphaned_forecasts(self) -> list[tuple[RunInfo, str]]:
        """Forecast runs whose source run was deleted (found by the last `list_runs`)."""
        return list(self._orphans)

    def _read_one(self, run: RunInfo, keys: Sequence[str]) -> dict[str, Series]:
        out = {}
        for key in keys:
            if key not in run.latest:
                continue
            rows = self._call(f"reading {key} of run {run.id}", self.client.get_metric_history, run.id, key)
            n = len(rows)
            steps = np.fromiter((m.step for m in rows), dtype=np.int64, count=n)
            values = np.fromiter((m.value for m in rows), dtype=np.float64, count=n)
            stamps = np.fromiter((m.timestamp for m in rows), dtype=np.int64, count=n)
            out[key] = clean_series(steps, values, stamps)
        return out

    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        futures = {self._pool.submit(self._read_one, r, keys): r for r in runs}
        try:
            for fut in as_completed(futures):
                run = futures[fut]
                try:
                    yield run, fut.result()
                except RunGone as e:
                    yield run, e
        finally:
            for fut in futures:
                fut.cancel()

    def read_since(self, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Tails of histories through the server's multi-run history route, where it has one.

        Runs asking for the same key from the same step share requests of up to 100 runs (the
        route's limit): sampled to `max_points` per run when given, else exact (see `_bulk_read`).
        A server without the route (older MLflow, a gateway that does not pass it) gets
        concurrent `get_metric_history` calls instead, cut to the same window.
        """
        if self._bulk is False:
            yield from super().read_since(runs, since, max_points)
            return
        by_id = {r.id: r for r in runs}
        batches: dict[tuple[str, int | None], list[RunInfo]] = {}
        for r in runs:
            for key, start in since.get(r.id, {}).items():
                if key in r.latest:
                    batches.setdefault((key, start), []).append(r)
        jobs = []
        for (key, start), members in batches.items():
            # few enough rows per answer that a single-worker server answers within the timeout
            rows = max(min(max_points or BULK_MAX_RESULTS, r.latest[key].step - (start or 0) + 1) for r in members)
            per = max(1, min(BULK_RUNS, BULK_ROWS // max(1, rows)))
            for i in range(0, len(members), per):
                jobs.append((key, start, members[i:i + per]))
        # a run is complete once every request naming it answered
        waiting = {rid: sum(1 for _, _, m in jobs for r in m if r.id == rid) for rid in since}
        got: dict[str, dict[str, Series]] = {rid: {} for rid in since}
        done_ids = set()
        for rid in [rid for rid, n in waiting.items() if n == 0]:
            done_ids.add(rid)
            yield by_id[rid], {}
        if not jobs:
            return
        first = jobs[0]
        try:
            answer = self._bulk_read(*first, max_points)
        except _NoBulkRoute:
            log.info("MLflow at %s has no sampled history route: reading full histories", _safe_uri(self.uri))
            self._bulk = False
            yield from super().read_since([r for r in runs if r.id not in done_ids], since, max_points)
            return
        self._bulk = True
        futures = {self._pool.submit(self._bulk_read, *job, max_points): job for job in jobs[1:]}
        gone: dict[str, RunGone] = {}
        pending = [(first, answer)]
        try:
            it = as_completed(futures)
            while True:
                for (key, _start, members), result in pending:
                    if isinstance(result, RunGone):
                        # one deleted run fails the whole request: ask for its members one by one
                        for r in members:
                            try:
                                one = self._bulk_read(key, _start, [r], max_points)
                                got[r.id].update(one.get(r.id, {}))
                            except RunGone as e:
                                gone[r.id] = e
                            waiting[r.id] -= 1
                    else:
                        for r in members:
                            if r.id in result:
                                got[r.id][key] = result[r.id]
                            waiting[r.id] -= 1
                    for r in members:
                        if waiting[r.id] == 0 and r.id not in done_ids:
                            done_ids.add(r.id)
                            yield r, gone.get(r.id) or got.pop(r.id)
                pending = []
                fut = next(it, None)
                if fut is None:
                    break
                try:
                    pending.append((futures[fut], fut.result()))
                except RunGone as e:
                    pending.append((futures[fut], e))
        finally:
            for fut in futures:
                fut.cancel()

    def _bulk_read(self, key: str, start: int | None, members: Sequence[RunInfo],
                   max_points: int | None) -> dict[str, Series]:
        """Run id -> series of `key` from `start` to the runs' watermarks, through the sampled route.

        With `max_points`, one request sampled to that many points per run. Without (exact), the
        range goes in windows one step narrower than the route's cap, so a run logging once per
        step is never sampled; a run that fills a window (several values per step) is read with
        `get_metric_history` instead.
        """
        lo = 0 if start is None else int(start)
        width = BULK_MAX_RESULTS - 1
        by_id = {r.id: r for r in members}
        full: set[str] = set()
        if not max_points:
            # windows cost requests by the step range, not by what was logged: a long range (or a
            # stray step far past the rest) is read whole with get_metric_history instead
            full = {r.id for r in members if (r.latest[key].step - lo) // width >= BULK_WINDOWS}
            members = [r for r in members if r.id not in full]
        out: dict[str, Series] = {}
        if members:
            out = self._windows(key, lo, members, max_points, width, full)
        for rid in full:  # every row of this key (possibly sampled by the route), cut to the range asked for
            s = self._read_one(by_id[rid], [key]).get(key)
            if s is not None:
                keep = s.steps >= lo
                out[rid] = type(s)(s.steps[keep], s.values[keep])
        return out

    def _windows(self, key: str, lo: int, members: Sequence[RunInfo], max_points: int | None, width: int,
                 full: set[str]) -> dict[str, Series]:
        """`key` of `members` from step `lo` through the route: one sampled request, or exact windows
        (a run that fills one is added to `full`, to be read whole)."""
        end = max(r.latest[key].step for r in members)
        ids = [r.id for r in members]
        if max_points:
            windows = [(lo, end, min(BULK_MAX_RESULTS, max_points))]
        else:
            windows = [(a, min(end, a + width - 1), BULK_MAX_RESULTS) for a in range(lo, end + 1, width)]
        by_run: dict[str, list] = {}
        for a, b, cap in windows:
            params: dict[str, Any] = {"run_ids": ids, "metric_key": key, "max_results": cap,
                                      "start_step": a, "end_step": b}
            rows = self._call(f"reading {key} of {len(members)} runs", self._bulk_rows, params)
            counts: dict[str, int] = {}
            for m in rows:
                rid = m.get("run_id", "")
                by_run.setdefault(rid, []).append(m)
                counts[rid] = counts.get(rid, 0) + 1
            if not max_points:
                full.update(rid for rid, n in counts.items() if n >= cap)
        out = {}
        for rid, ms in by_run.items():
            if rid in full:
                continue
            n = len(ms)
            steps = np.fromiter((int(m.get("step", 0)) for m in ms), dtype=np.int64, count=n)
            values = np.fromiter((_json_float(m.get("value")) for m in ms), dtype=np.float64, count=n)
            stamps = np.fromiter((int(m.get("timestamp", 0)) for m in ms), dtype=np.int64, count=n)
            out[rid] = clean_series(steps, values, stamps)
        return out

    def _bulk_rows(self, params: dict[str, Any]) -> list[dict]:
        """The route's metrics: over REST with the client's own credentials, or from a local store."""
        from mlflow.exceptions import MlflowException

        # the Python client has no call for this route; its store object knows how to reach it
        store = self.client._tracking_client.store
        get_creds = getattr(store, "get_host_creds", None)
        if get_creds is None:  # a local store (sqlite:///, file:) answers the same query itself
            fn = getattr(store, "get_metric_history_bulk_interval", None)
            if fn is None:
                raise _NoBulkRoute("store without sampled history")
            try:
                ms = fn(params["run_ids"], params["metric_key"], params["max_results"], params["start_step"],
                        params["end_step"])
            except NotImplementedError:
                raise _NoBulkRoute("store without sampled history") from None
            return [{"run_id": m.run_id, "step": m.step, "value": m.value, "timestamp": m.timestamp} for m in ms]
        from mlflow.utils.rest_utils import http_request

        resp = http_request(get_creds(), BULK_ROUTE, "GET", params=params)
        if resp.status_code in (404, 405, 501):
            raise _NoBulkRoute(f"HTTP {resp.status_code}")
        if resp.status_code != 200:
            try:
                body = resp.json()
            except ValueError:
                body = {"message": resp.text[:300]}
            raise MlflowException(body.get("message", f"HTTP {resp.status_code}"),
                                  error_code=body.get("error_code", "INTERNAL_ERROR"))
        return resp.json().get("metrics", [])

    # -- writing ---------------------------------------------------------------------------
    def create_forecast(self, revision: ForecastRevision) -> str:
        """Create the forecast run, then log every point in one batch, then mark it finished.

        The server stores one batch's metrics in one transaction, so the UI draws all of the
        forecast or none of it; the run counts as complete (`list_runs`) only once FINISHED.
        """
        from mlflow.entities import Metric

        src = revision.source
        self._prepare_experiment(src.scope, list(revision.curves))
        tags = {TAG_KIND: KIND_FORECAST, TAG_SOURCE: src.id, COLOR_TAG: run_color(src.id, src.tags),
                "forecast.input": revision.input, "mlflow.note.content":
                f"Forecast of run {src.name} ({src.id}) made by forecaster; superseded revisions are deleted."}
        tags.update({k: _clip(v) for k, v in revision.tags.items()})
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(v), now, int(s)) for key, steps, values in revision.series(MAX_BATCH)
                   for s, v in zip(steps, values)]
        made = self._call(f"creating the forecast run of {src.id}", self.client.create_run, src.scope,
                           tags=tags, run_name=revision.name or f"{src.name} forecast")
        cid = made.info.run_id
        try:
            if revision.plot_png:
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, revision.plot_name)
                    with open(path, "wb") as f:
                        f.write(revision.plot_png)
                    self._call(f"uploading the plot of {src.id}", self.client.log_artifact, cid, path)
            self._call(f"logging the forecast of {src.id}", self.client.log_batch, cid, metrics=metrics)
            self._call(f"finishing the forecast run of {src.id}", self.client.set_terminated, cid, "FINISHED")
        except BaseException:
            # best effort: an unfinished forecast run must not linger beside the live one
            try:
                self.client.delete_run(cid)
            except Exception:  # noqa: BLE001 - the tracker may be gone; the next sync removes it
                log.debug("could not remove the unfinished forecast run %s", cid)
            raise
        return cid

    def set_tags(self, run: RunInfo, tags: Mapping[str, str | None]) -> None:
        """Upsert tags with log_batch (status and end time stay); a None value deletes the tag."""
        from mlflow.entities import RunTag

        put = [RunTag(k, _clip(v)) for k, v in tags.items() if v is not None]
        for i in range(0, len(put), 100):
            self._call(f"tagging run {run.id}", self.client.log_batch, run.id, tags=put[i:i + 100])
        for k, v in tags.items():
            if v is None and k in run.tags:
                try:
                    self._call(f"untagging run {run.id}", self.client.delete_tag, run.id, k)
                except RunGone:
                    raise
                except TrackerError as e:
                    if "No tag with name" not in str(e):
                        raise

    def stop_run(self, run: RunInfo) -> str:
        """MLflow cannot stop a run remotely: tag it ``forecast.stop_requested=true`` (status untouched).

        The training loop (or a person) can poll the tag; setting the status to KILLED ourselves
        would only hide a process that keeps training.
        """
        self.set_tags(run, {TAG_STOP: "true"})
        msg = (f"MLflow cannot stop run {run.label} remotely: tagged {TAG_STOP}=true "
               "(its status is left unchanged; stop the training process yourself)")
        log.warning(msg)
        return msg

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        try:
            self._call(f"deleting forecast run {forecast_id}", self.client.delete_run, forecast_id)
        except RunGone:
            pass  # already gone: the goal state

    def create_summary(self, revision: Any) -> str:
        """A top-level run in the experiment: params, tags, step-0 metrics, artifacts, then FINISHED.

        `revision` is a forecaster.trackers.SummaryRevision. On failure the unfinished run is
        removed (best effort) and the error raised, so a listed summary run is always complete.
        """
        from mlflow.entities import Metric, Param

        tags = {"mlflow.note.content": f"{revision.name}: written by forecaster sync; superseded revisions "
                                       "are deleted.", **{k: _clip(v) for k, v in revision.tags.items()},
                TAG_KIND: revision.kind, "forecast.input": revision.input}
        run = self._call(f"creating the summary run of experiment {revision.scope}", self.client.create_run,
                         revision.scope, tags=tags, run_name=revision.name)
        rid = run.info.run_id
        try:
            now = int(time.time() * 1000)
            params = [Param(k, _clip(v)[:500]) for k, v in revision.params.items()]
            metrics = [Metric(k, float(v), now, 0) for k, v in revision.metrics.items() if np.isfinite(v)]
            for i in range(0, max(len(params), len(metrics)), 100):
                self._call(f"logging the summary of experiment {revision.scope}", self.client.log_batch, rid,
                           metrics=metrics[i:i + 100], params=params[i:i + 100])
            if revision.artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in revision.artifacts.items():
                        path = os.path.join(tmp, name)
                        with open(path, "wb") as f:
                            f.write(data)
                        self._call(f"uploading {name} of experiment {revision.scope}", self.client.log_artifact,
                                   rid, path)
            self._call(f"finishing the summary run of experiment {revision.scope}", self.client.set_terminated,
                       rid, "FINISHED")
        except BaseException:
            try:
                self.client.delete_run(rid)
            except Exception:  # noqa: BLE001 - the next sync removes an unfinished summary run
                log.debug("could not remove the unfinished summary run %s", rid)
            raise
        return rid

    def delete_summary(self, summary: RunInfo) -> None:
        try:
            self._call(f"deleting summary run {summary.id}", self.client.delete_run, summary.id)
        except RunGone:
            pass

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_NET_ERRORS = (("Connection refused", "connection refused"), ("Name or service not known", "unknown host"),
               ("nodename nor servname", "unknown host"), ("timed out", "timed out"),
               ("Read timed out", "timed out"), ("RemoteDisconnected", "connection closed by the server"),
               ("Connection reset", "connection reset"), ("Max retries exceeded", "no answer after retries"),
               ("503", "service unavailable (503)"), ("502", "bad gateway (502)"))


def _unreachable(text: str) -> str | None:
    """A short reason when an MLflow error is a transport failure (after MLflow's own retries)."""
    for needle, reason in _NET_ERRORS:
        if needle in text:
            return reason
    return None


def _clip(v: Any) -> str:
    s = str(v)
    return s if len(s) <= MAX_TAG_VALUE else s[: MAX_TAG_VALUE - 3] + "..."


def _first_line(e: BaseException) -> str:
    """The error's first line, credentials masked: MLflow and requests quote the URLs they called."""
    text = redact(str(e)).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def chart_view_path(experiment_id: str, band: bool = False) -> str:
    """The UI route of an experiment's training runs in chart view (MLflow 3; 2.x ignores the tab).

    With `band`, the route opens our shared view (`band_view_state`), which the experiment must hold.
    """
    path = f"#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
    return f"{path}&viewStateShareKey={VIEW_KEY}" if band else path


def _line_chart(uuid: str, section: str, key: str, keys: Sequence[str] | None = None,
                deleted: bool = False) -> dict[str, Any]:
    # Every field the UI's own line chart card carries: a shared state is merged with the page's
    # defaults field by field, not card by card, so a card must come complete.
    card = {"uuid": uuid, "type": "LINE", "metricSectionId": section, "deleted": deleted, "isGenerated": True,
            "metricKey": key, "displayName": key, "runsCountToCompare": 10, "lineSmoothness": 0,
            "scaleType": "linear", "xAxisScaleType": "linear", "xAxisKey": "step", "selectedXAxisMetricKey": "",
            "yAxisKey": "METRIC", "yAxisExpressions": [], "ignoreOutliers": False, "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
            "range": {}}
    if keys:
        card["selectedMetricKeys"] = list(keys)
    return card


def band_view_state(keys: Sequence[str]) -> dict[str, Any]:
    """The experiment page state of our shared view: each metric's chart also draws its band.

    A line chart in the MLflow UI draws every key in its ``selectedMetricKeys`` for every run, so
    the `loss` chart lists ``loss``, ``loss.p10`` and ``loss.p90``: real runs draw their loss,
    forecast runs their p50 and, dashed and dotted in the same colour, the band's edges. The UI
    adds a chart of its own for any metric no chart names as ``metricKey``, so ``loss.p10`` and
    ``loss.p90`` are named by deleted (hidden) cards; every other metric still gets its usual
    chart, after ours. All runs are shown: the UI's default (first 10 in the table) could hide a
    long-running run behind newer finished ones and its fresher forecast.
    """
    sections: dict[str, str] = {}
    charts: list[dict[str, Any]] = []
    for key in keys:
        # the UI files a metric under the part of its name before the last "/" ("Model metrics": none)
        name = key.rsplit("/", 1)[0] if "/" in key else "Model metrics"
        section = sections.setdefault(name, f"forecast-section-{len(sections)}")
        lo, hi = ForecastRevision.band_keys(key)
        charts += [_line_chart(f"forecast-chart-{key}", section, key, [key, lo, hi]),
                   _line_chart(f"forecast-chart-{lo}", section, lo, deleted=True),
                   _line_chart(f"forecast-chart-{hi}", section, hi, deleted=True)]
    return {
        "compareRunCharts": charts,
        # one chart per row at a readable height; "reordered" makes the UI append the charts it
        # adds for other metrics after ours instead of sorting them in by name
        "compareRunSections": [{"uuid": uuid, "name": name, "display": True, "isReordered": True, "deleted": False,
                                "isGenerated": True, "columns": 1, "cardHeight": 520}
                               for name, uuid in sections.items()],
        "isAccordionReordered": False,
        "runsHiddenMode": "SHOW_ALL",
    }


def encode_view_state(state: Mapping[str, Any]) -> str:
    """A view state as the UI reads it from the tag: JSON, or deflated when JSON would not fit a tag."""
    text = json.dumps(state, separators=(",", ":"))
    if len(text) <= MAX_TAG_VALUE:
        return text
    return "deflate;" + b64encode(zlib.compress(text.encode(), 9)).decode()


def _view_keys(value: str | None) -> frozenset[str]:
    """The metric keys a band view of ours draws (empty: no view, or not one we wrote)."""
    if not value:
        return frozenset()
    try:
        if value.startswith("deflate;"):
            value = zlib.decompress(b64decode(value[len("deflate;"):])).decode()
        charts = json.loads(value)["compareRunCharts"]
        return frozenset(c["metricKey"] for c in charts
                         if str(c.get("uuid", "")).startswith("forecast-chart-") and c.get("selectedMetricKeys"))
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error):
        return frozenset()


def _safe_uri(uri: str | None) -> str:
    """The tracking URI without credentials (user:password@ or a token in the query)."""
    if not uri:
        return "?"
    if "@" not in uri and "?" not in uri:
        return uri
    from urllib.parse import urlsplit, urlunsplit

    try:
        p = urlsplit(uri)
        netloc = p.hostname or ""
        if p.port:
            netloc += f":{p.port}"
    except ValueError:
        return mask_uri(uri)
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def _check_local_store(uri: str, canonical: str) -> None:
    """A local store (sqlite:///, file:, a path) must exist: MLflow would create an empty one at a typo."""
    if canonical.startswith("sqlite") and canonical.endswith("://"):
        return  # sqlite:// alone: in memory
    if canonical.startswith("sqlite"):
        path, what = canonical.split(":///", 1)[1], "SQLite file"
        exists = os.path.isfile(path)
    elif canonical.startswith("file://"):
        path, what = canonical[len("file://"):], "folder"
        exists = os.path.isdir(path)
    else:
        return
    if not exists:
        where = "its folder does not exist either" if not os.path.isdir(os.path.dirname(path) or ".") else \
            "no such file" if what == "SQLite file" else "no such folder"
        raise InputError(f"mlflow: no store at {mask_uri(uri)} ({what} {path}: {where}); forecast sync reads "
                         "an existing store and does not create one: check the path")
