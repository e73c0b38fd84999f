"""Reading metric histories from MLflow: per run and key, or many runs per request through the
sampled multi-run route that the MLflow UI's charts use (`read_since`, the history cache's way in).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import as_completed
from typing import Any

import numpy as np

from forecaster.trackers import RunGone, RunInfo, Series, Tracker, clean_series
from forecaster_mlflow.uri import safe_uri

log = logging.getLogger(__name__)

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


class HistoryReads:
    """The reading half of `MlflowTracker` (it provides ``client``, ``_pool``, ``_call``, ``_bulk``, ``uri``)."""

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
            yield from Tracker.read_since(self, runs, since, max_points)
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
            log.info("MLflow at %s has no sampled history route: reading full histories", safe_uri(self.uri))
            self._bulk = False
            yield from Tracker.read_since(self, [r for r in runs if r.id not in done_ids], since, max_points)
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
