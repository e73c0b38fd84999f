"""The online W&B tracker (``--project ENTITY/PROJECT``): the public API in, online companion runs out.

One fresh `wandb.Api` per sync (its query cache must not outlive the sync); runs come from one paged
search per project; histories through `online_history`. The source run is only ever touched through the API's summary
and tags (never resumed: a resume re-marks crashed runs as finished and races a live writer).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecaster import DISTRIBUTION
from forecaster.errors import InputError, RunGone, TrackerError
from forecaster.redact import mask_uri
from forecaster.tags import ALERT_PREFIX, KIND_FORECAST, PREFIX
from forecaster.trackers import FAILED, ForecastRevision, RunInfo, Series, SummaryRevision, Watermark
from forecaster_wandb import compat
from forecaster_wandb.core import (
    COMPLETE,
    JOB_TYPE,
    STATES,
    SUMMARY_KINDS,
    WANDB_TAG_PREFIX,
    Rows,
    companion_id,
    forecast_config,
    is_summary,
    number,
    own_summary_tags,
    summary_id,
    summary_tags,
    summary_value,
)
from forecaster_wandb.errors import http_status, is_gone, message, tracker_error
from forecaster_wandb.online_history import HistoryCache, HistoryReader, default_cache_dir
from forecaster_wandb.tracker import WandbTracker


@dataclass
class _OwnRun:
    """One run of ours to write online: where, under which ids, how it is written and checked."""

    scope: str
    run_id: Callable[[int], str]  # the deterministic id of each attempt
    init_kwargs: Callable[[str], dict[str, Any]]
    write: Callable[[Any], None]  # fills the open run
    complete: Callable[[Any], bool]  # the run as the API reads it back is whole
    delete: Callable[[Any, str], None]  # deletes it, refusing a run that is not ours
    what: str  # "writing ..." for errors
    name: Callable[[str], str]  # the run by its id, for errors
    exhausted: str  # the error when no id is free


class OnlineWandbTracker(WandbTracker):
    """Runs of each ENTITY/PROJECT through `wandb.Api`; companions written with ``wandb.init(mode="online")``."""

    def __init__(self, *, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._orphans: list[tuple[RunInfo, str]] = []
        cache_root = default_cache_dir() if cache_dir is None else (Path(cache_dir) if cache_dir else None)
        self._reader = HistoryReader(HistoryCache(cache_root), self.workers, self.page_size,
                                     lambda path: self._get_run(path, fresh=True, quiet=True) is not None)
        self._api_obj: Any = None
        self._api_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------------
    def describe(self) -> str:
        base = mask_uri(self.uri or os.environ.get("WANDB_BASE_URL", ""))
        return f"wandb {base} {','.join(self.experiments)}".strip()

    def identity(self) -> list[str]:
        """The canonical base URL and each ENTITY/PROJECT."""
        return sorted({f"wandb|{self.base_url}|{s}" for s in self.experiments})

    def orphaned_forecasts(self) -> list[tuple[RunInfo, str]]:
        """Companions whose source run was deleted (without --filter; found by the last listing)."""
        return list(self._orphans)

    def _api(self) -> Any:
        """The sync's one wandb.Api (created on first use: a fresh query cache per sync)."""
        with self._api_lock:
            if self._api_obj is None:
                try:
                    import wandb
                except ImportError as e:  # pragma: no cover - the entry point needs the extra
                    raise InputError(f"the W&B tracker needs wandb: pip install '{DISTRIBUTION}[wandb]'") from e
                overrides = {"base_url": self.uri} if self.uri else None
                try:
                    self._api_obj = wandb.Api(overrides=overrides, timeout=self.timeout)
                except Exception as err:  # noqa: BLE001 - wandb raises many types at login
                    name = type(err).__name__
                    if "Usage" in name or "Auth" in name or http_status(err) in (401, 403):
                        raise TrackerError(f"cannot log in to W&B ({message(err)}); set WANDB_API_KEY "
                                           "or run `wandb login`") from None
                    raise tracker_error(err, "connecting") from None
            return self._api_obj

    def close(self) -> None:
        self._reader.close()
        self._api_obj = None

    def _get_run(self, path: str, fresh: bool = False, quiet: bool = False) -> Any:
        """The run at `path` via the API, or None when it does not exist."""
        api = self._api()
        try:
            run = api.run(path)
            if fresh:
                run.load_full_data(force=True)
            return run
        except Exception as err:  # noqa: BLE001
            if quiet or is_gone(err):
                return None
            raise tracker_error(err, f"looking up run {path}") from None

    # -- listing ----------------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        with self._api_lock:
            self._api_obj = None  # a fresh wandb.Api: its per-query cache must not outlive a listing
        out: list[RunInfo] = []
        self._orphans = []
        for scope in self.experiments:
            out.extend(self._list_scope(scope))
        return out

    def _list_scope(self, scope: str) -> list[RunInfo]:
        api = self._api()
        try:
            # Our own runs (companions, summary runs) are listed on their own, in one search: a
            # user filter (config.x = y) would hide them.
            ours = list(api.runs(scope, filters={"jobType": {"$in": [JOB_TYPE, *SUMMARY_KINDS]}},
                                 per_page=100, lazy=False))
            runs = list(api.runs(scope, filters=self.filters, per_page=100, lazy=False))
        except Exception as err:  # noqa: BLE001
            if isinstance(err, (TrackerError, InputError)):
                raise
            if "could not find project" in str(err).lower():
                raise InputError(f"W&B project {scope} not found (or not visible with this API key)") from None
            if self.filters and http_status(err) == 400:
                raise InputError(f"--filter was refused by W&B as a run filter: {message(err)}") from None
            raise tracker_error(err, f"listing runs of {scope}") from None
        companions = [c for c in ours if c.job_type == JOB_TYPE]
        summaries = [c for c in ours if is_summary(c.job_type, c.config)]
        by_source: dict[str, list[tuple[str, str, bool]]] = {}
        for c in companions:
            block = forecast_config(c.config)
            if block.get("kind") == KIND_FORECAST and block.get("source"):
                by_source.setdefault(str(block["source"]), []).append(
                    (str(c.created_at or ""), c.id, _marked_complete(c)))
        infos = []
        for r in runs:
            if r.job_type == JOB_TYPE or forecast_config(r.config).get("kind") == KIND_FORECAST \
                    or is_summary(r.job_type, r.config):
                continue
            mine = sorted(by_source.get(r.id, []))
            info = _info(scope, r, [cid for _, cid, complete in mine if complete])
            info.partial = [cid for _, cid, complete in mine if not complete]
            infos.append(info)
        infos.extend(_summary_info(scope, r) for r in summaries)
        if not self.filters:
            # with a filter a missing source may only be filtered out; without one it is gone, once
            # the API confirms it (a listing page can shift under a concurrent delete)
            listed = {r.id for r in runs}
            for src, made in sorted(by_source.items()):
                if src not in listed and self._get_run(f"{scope}/{src}") is None:
                    stand_in = RunInfo(id=src, name=src, scope=scope, status=FAILED)
                    self._orphans.extend((stand_in, cid) for _, cid, _ in made)
        return infos

    # -- reading ----------------------------------------------------------------------------------
    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        yield from self._reader.read_histories(self._api(), runs, keys)

    def read_since(self, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Tails of histories: a `scan_history` from each start step (exact points, no sampling)."""
        yield from self._reader.read_since(self._api(), runs, since, max_points)

    # -- writing ----------------------------------------------------------------------------------
    def _create_forecast(self, revision: ForecastRevision, rows: Rows) -> str:
        # wandb >= 0.19 runs several runs per process (reinit="create_new"): the engine's write
        # threads each fill their own companion, about 3x faster than one at a time.
        src = revision.source
        return self._create_run(_OwnRun(
            src.scope, lambda attempt: companion_id(src.scope, src.id, revision.input, attempt),
            lambda cid: self._init_kwargs(revision, cid), lambda run: self._write(run, revision, rows),
            lambda run: _complete(run, revision, len(rows.steps)),
            lambda run, cid: self._delete_run(run, src, cid),
            f"writing the forecast of run {src.label}", lambda cid: f"companion run {cid} of {src.label}",
            f"could not find a free companion id for run {src.label}"))

    def _create_summary(self, revision: SummaryRevision) -> str:
        scope = revision.scope
        return self._create_run(_OwnRun(
            scope, lambda attempt: summary_id(scope, revision.kind, revision.input, attempt),
            lambda sid: self._summary_init_kwargs(revision, sid), lambda run: self._write_summary(run, revision),
            lambda run: _summary_complete(run, revision),
            lambda run, sid: _delete_summary_run(run, scope, sid),
            f"writing the {revision.kind} summary run of {scope}", lambda sid: f"summary run {sid} of {scope}",
            f"could not find a free summary run id in {scope}"))

    def _create_run(self, own: _OwnRun) -> str:
        """Write one of our runs under the first free deterministic id, and read it back complete.

        An existing complete run under the id is reused (an earlier sync wrote it and stopped
        before recording it); a half-written one is deleted and the next id tried, since W&B
        never reuses a deleted run's id.
        """
        import wandb

        for attempt in range(5):
            rid = own.run_id(attempt)
            path = f"{own.scope}/{rid}"
            existing = self._get_run(path)
            if existing is not None:
                if own.complete(existing):
                    return rid
                own.delete(existing, rid)
                continue
            try:
                run = wandb.init(mode="online", **own.init_kwargs(rid))
            except Exception as err:  # noqa: BLE001
                if "is in use" in str(err):  # a failed init earlier in this process holds the id
                    continue
                self._cleanup(None, path, lambda left: own.delete(left, rid))
                raise tracker_error(err, own.what) from None
            try:
                own.write(run)
                run.finish(exit_code=0)
                run = None
                written = self._get_run(path, fresh=True)
                if written is None or not own.complete(written):
                    raise TrackerError(f"{own.name(rid)} did not arrive complete")
                return rid
            except Exception as err:  # noqa: BLE001 - clean up, then report one clear error
                self._cleanup(run, path, lambda left: own.delete(left, rid))
                if isinstance(err, (TrackerError, InputError)):
                    raise
                raise tracker_error(err, own.what) from None
        raise TrackerError(own.exhausted)

    def _cleanup(self, run: Any, path: str, delete: Any) -> None:
        """Best effort: finish a half-written run of ours, then delete whatever of it reached the server."""
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
        leftover = self._get_run(path, quiet=True)
        if leftover is not None:
            try:
                delete(leftover)
            except Exception:  # noqa: BLE001 - the next sync lists it as not current and deletes it
                pass

    def _set_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        wrun = self._get_run(f"{run.scope}/{run.id}", fresh=True)
        if wrun is None:
            raise RunGone(f"run {run.label} was deleted during the sync")
        try:
            block = dict(wrun.summary_metrics.get("forecast") or {})
            rest: dict[str, Any] = {}
            for k, v in tags.items():
                short = k[len(PREFIX):] if k.startswith(PREFIX) else None
                if short is None:
                    rest[k] = summary_value(k, v)
                elif v is None:  # the engine's way of removing a tag
                    block.pop(short, None)
                else:
                    block[short] = summary_value(short, v)
            wrun.summary.update({"forecast": block, **rest})
            if any(k.startswith(ALERT_PREFIX) for k in tags):
                _mirror_alert_tags(wrun, block)
        except Exception as err:  # noqa: BLE001
            if isinstance(err, (TrackerError, RunGone)):
                raise
            if is_gone(err):
                raise RunGone(f"run {run.label} was deleted during the sync") from None
            raise tracker_error(err, f"annotating run {run.label}") from None

    def stop_run(self, run: RunInfo) -> str:
        """Ask W&B to stop the run (the stop request the UI's Stop button sends); the client exits it.

        W&B flags the run and the training process's wandb client stops it at its next heartbeat;
        we never write the run's state.
        """
        wrun = self._get_run(f"{run.scope}/{run.id}")
        if wrun is None:
            raise RunGone(f"run {run.label} was deleted during the sync")
        try:
            wrun.stop()
        except Exception as err:  # noqa: BLE001
            if is_gone(err):
                raise RunGone(f"run {run.label} was deleted during the sync") from None
            raise tracker_error(err, f"stopping run {run.label}") from None
        return f"asked W&B to stop run {run.label}"

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        existing = self._get_run(f"{run.scope}/{forecast_id}")
        if existing is None:
            return
        self._delete_run(existing, run, forecast_id)

    @staticmethod
    def _delete_run(existing: Any, source: RunInfo, cid: str) -> None:
        block = forecast_config(existing.config)
        if existing.job_type != JOB_TYPE or block.get("source") != source.id:
            # Never delete anything that is not this run's companion, whatever the tags say.
            raise InputError(f"refusing to delete run {cid}: it is not a forecast companion of {source.label}")
        _delete(existing, f"deleting superseded forecast {cid}")

    def delete_summary(self, summary: RunInfo) -> None:
        existing = self._get_run(f"{summary.scope}/{summary.id}")
        if existing is not None:
            _delete_summary_run(existing, summary.scope, summary.id)


# -- runs as the public API lists them ---------------------------------------------------------------
def _info(scope: str, r: Any, forecasts: list[str]) -> RunInfo:
    """A user's run: state, config, the engine's tags, and a watermark per logged numeric summary key."""
    summary = dict(r.summary_metrics or {})
    keys_info = compat.history_keys(r)
    last = keys_info.get("lastStep")
    if last is None:
        last = summary.get("_step", -1)
    ts = summary.get("_timestamp")
    ts_ms = int(float(ts) * 1000) if isinstance(ts, (int, float)) else 0
    latest: dict[str, Watermark] = {}
    logged = set((keys_info.get("keys") or {}).keys())
    for k, v in summary.items():
        x = number(v)
        if k.startswith("_") or x is None or (logged and k not in logged):
            continue
        latest[k] = Watermark(step=int(last), timestamp=ts_ms, value=x)
    return RunInfo(
        id=r.id, name=r.name or r.id, scope=scope,
        status=STATES.get(str(r.state).lower(), FAILED),
        latest=latest, config=dict(r.config or {}), tags=summary_tags(summary),
        forecasts=forecasts, url=r.url,
        extra={"storage_id": r.storage_id, "wandb_tags": list(r.tags or []),
               "group": r.group, "last_step": int(last), "history_keys": sorted(logged)},
    )


def _summary_info(scope: str, r: Any) -> RunInfo:
    """A summary run as the engine sees it: its kind always, its input only once it is complete."""
    return RunInfo(id=r.id, name=r.name or r.id, scope=scope, status=STATES.get(str(r.state).lower(), FAILED),
                   tags=own_summary_tags(r.job_type, r.summary_metrics or {}), url=r.url)


def _marked_complete(run: Any) -> bool:
    """A finished companion whose summary carries the `complete` mark written last."""
    block = (run.summary_metrics or {}).get("forecast") or {}
    return str(run.state) == "finished" and isinstance(block, Mapping) and block.get(COMPLETE) is True


def _complete(run: Any, revision: ForecastRevision, n_rows: int) -> bool:
    """Marked complete, for this revision's input, with all its rows."""
    block = (run.summary_metrics or {}).get("forecast") or {}
    return (_marked_complete(run) and block.get("input") == revision.input
            and compat.history_line_count(run) >= n_rows)


def _summary_complete(run: Any, revision: SummaryRevision) -> bool:
    block = (run.summary_metrics or {}).get("forecast") or {}
    return (str(run.state) == "finished" and is_summary(run.job_type, run.config)
            and isinstance(block, Mapping) and block.get(COMPLETE) is True
            and block.get("input") == revision.input)


def _mirror_alert_tags(wrun: Any, block: Mapping[str, Any]) -> None:
    """Firing alerts as W&B tags ``forecast:<rule>`` (filterable in the UI); other tags untouched."""
    from forecaster.notify import alert_state  # scipy behind it: not at adapter import

    short = ALERT_PREFIX[len(PREFIX):]
    wanted = sorted(WANDB_TAG_PREFIX + k[len(short):] for k, v in block.items()
                    if k.startswith(short) and v is not None and alert_state(str(v)) != "ok")
    current = list(wrun.tags or [])
    new = [t for t in current if not t.startswith(WANDB_TAG_PREFIX)] + wanted
    if new != current:
        compat.set_run_tags(wrun, new)


def _delete(run: Any, what: str) -> None:
    """Delete a run through the API; one already gone is what deleting wanted."""
    try:
        run.delete()
    except Exception as err:  # noqa: BLE001
        if not is_gone(err):
            raise tracker_error(err, what) from None


def _delete_summary_run(existing: Any, scope: str, sid: str) -> None:
    if not is_summary(existing.job_type, existing.config):
        # Never delete anything that is not our summary run, whatever its tags say.
        raise InputError(f"refusing to delete run {sid} of {scope}: it is not a forecaster summary run")
    _delete(existing, f"deleting superseded summary run {sid}")
