"""The MLflow adapter for `forecast sync`: reads runs with MlflowClient, writes forecasts as runs beside them.

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

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from forecaster import tags as tag_keys
from forecaster.errors import InputError
from forecaster.trackers import (
    FAILED, FINISHED, KILLED, RUNNING, RunGone, RunInfo, Tracker, TrackerError, Watermark, canonical_uri,
)
from forecaster_mlflow.client import HTTP_DEFAULTS, first_line, is_gone, unreachable
from forecaster_mlflow.reads import HistoryReads
from forecaster_mlflow.uri import check_local_store, safe_uri
from forecaster_mlflow.view import VIEW_TAG, chart_view_path, view_keys
from forecaster_mlflow.writes import ForecastWrites

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"  # forecasts written by earlier versions were child runs
_STATUS = {"RUNNING": RUNNING, "SCHEDULED": RUNNING, "FINISHED": FINISHED, "FAILED": FAILED,
           "KILLED": KILLED}
PAGE = 1000


class MlflowTracker(HistoryReads, ForecastWrites, Tracker):
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
        for k, v in HTTP_DEFAULTS.items():
            os.environ.setdefault(k, v)
        import mlflow  # noqa: F401 - lazy: the CLI loads adapter classes without their clients
        from mlflow.tracking import MlflowClient

        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if not self.uri:
            raise InputError("mlflow tracker: give --tracking-uri or set MLFLOW_TRACKING_URI")
        # before the client sees it: a malformed URI makes it (and requests) quote it, password and all
        self.canonical_uri = canonical_uri(self.uri)
        check_local_store(self.uri, self.canonical_uri)
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
        return f"mlflow {safe_uri(self.uri)} experiments={','.join(self.experiments)}"

    def identity(self) -> list[str]:
        """One key per experiment: the canonical URI and the experiment's id (names are resolved)."""
        return sorted({f"mlflow|{self.canonical_uri}|experiment:{i}" for i in self.experiment_ids()})

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one client call; map refusals to RunGone and everything else to one clear TrackerError."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            if is_gone(e):
                raise RunGone(f"{what}: {first_line(e)}") from None
            reason = unreachable(str(e))
            if reason:
                raise TrackerError(f"cannot reach MLflow at {safe_uri(self.uri)} ({what}): {reason}") from None
            raise TrackerError(f"MLflow at {safe_uri(self.uri)} failed on {what}: {first_line(e)}") from None
        except OSError as e:  # requests' ConnectionError is an OSError
            raise TrackerError(f"cannot reach MLflow at {safe_uri(self.uri)} ({what}): {first_line(e)}") from None

    def experiment_ids(self) -> list[str]:
        """The experiments in scope as ids (names resolved once per sync)."""
        if self._exp_ids is None:
            ids = []
            for ref in self.experiments:
                exp = self._call(f"looking up experiment {ref!r}", self._lookup, ref)
                if exp is None:
                    raise InputError(f"mlflow: experiment {ref!r} not found at {safe_uri(self.uri)}")
                if getattr(exp, "lifecycle_stage", "active") == "deleted":
                    raise InputError(f"mlflow: experiment {ref!r} (id {exp.experiment_id}) is deleted at "
                                     f"{safe_uri(self.uri)}; restore it or take it out of the sync")
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
                                     f"{first_line(e)}") from None
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
            return f"{safe_uri(self.uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
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
                self._view_keys[scope] = view_keys(self.client.get_experiment(scope).tags.get(VIEW_TAG))
            except Exception as e:  # noqa: BLE001 - only the link is at stake
                log.debug("could not read the views of experiment %s: %s", scope, first_line(e))
        return f"{safe_uri(self.uri).rstrip('/')}/{chart_view_path(scope, band=bool(self._view_keys.get(scope)))}"

    # -- reading ---------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        """One paged search of the experiments (two when a user filter would hide forecast runs)."""
        runs = self._search(self.filter or "", user=bool(self.filter))
        if self.filter:
            # forecast and summary runs (any forecast.kind) would be hidden by the user's filter
            runs += self._search(f"tags.`{tag_keys.KIND}` LIKE '%'")
        sources: dict[str, RunInfo] = {}
        forecast_runs: list[tuple[int, str, str, bool, str]] = []  # (start, source, id, complete, experiment)
        seen = set()
        for r in runs:
            rid = r.info.run_id
            if rid in seen:
                continue
            seen.add(rid)
            tags = dict(r.data.tags)
            if tags.get(tag_keys.KIND) == tag_keys.KIND_FORECAST:
                src = tags.get(tag_keys.SOURCE) or tags.get(tag_keys.LEGACY_SOURCE) or tags.get(PARENT_TAG)
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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
