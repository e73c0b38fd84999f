"""The W&B tracker adapter: source runs in, companion forecast runs out, online or offline.

Online (``--project ENTITY/PROJECT``): one fresh `wandb.Api` per sync (its query cache must not
outlive the sync); runs come from one paged search per project; histories from
``scan_history(keys=[key])`` one key at a time (a multi-key scan returns only rows holding *all*
keys), concurrently, and incrementally from a local cache of what was already read; forecasts go
into a *companion run* per revision (deterministic id, ``job_type="forecast"``, a group of its own)
that logs the predicted curve under the source's own metric keys at future steps, so W&B draws it
as one more line in the same panel. The source run is only ever touched through the API's summary
and tags (never resumed: a resume re-marks crashed runs as finished and races a live writer).

Offline (``--wandb-dir DIR``): runs come from the ``offline-run-*`` transaction logs (read-only),
companions are written as offline runs beside them for ``wandb sync`` to upload later, and the
source annotations live in a small state file in DIR, since the user's run files must not change.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from forecaster import DISTRIBUTION, __version__
from forecaster.errors import InputError
from forecaster.redact import mask_uri, redact
from forecaster.trackers import (
    FAILED,
    FINISHED,
    KILLED,
    KIND_FORECAST,
    KIND_SCALING,
    RUNNING,
    TAG_INPUT,
    TAG_KIND,
    TAG_PREFIX,
    TAG_RUN_ID,
    TAG_STOP,
    TAG_SOURCE,
    ForecastRevision,
    RunGone,
    RunInfo,
    Series,
    SummaryRevision,
    Tracker,
    TrackerError,
    TrackerOption,
    Watermark,
    canonical_uri,
    clean_series,
    fingerprint,
)

JOB_TYPE = KIND_FORECAST  # job_type of companion runs: how they are told apart from the user's
SUMMARY_KINDS = (KIND_SCALING,)  # summary runs of a whole project; their job_type is their kind
ALERT_TAG_PREFIX = TAG_PREFIX + "alert."  # forecast.alert.<rule> = "ok" | "<state>: <message>", mirrored as W&B tags
NUMERIC_TAGS = ("final", "final_p10", "final_p90", "final_step", "eta_step")  # stored as numbers
WANDB_TAG_PREFIX = "forecast:"
log = logging.getLogger(__name__)
STATE_FILE = "forecaster-state.json"  # offline mode: source annotations (user runs stay untouched)
OFFSETS_FILE = "forecaster-offsets.json"  # offline mode: each log parsed so far, to parse only what was appended

_STATES = {"running": RUNNING, "pending": RUNNING, "finished": FINISHED, "failed": FAILED,
           "crashed": FAILED, "killed": KILLED, "preempted": KILLED, "preempting": KILLED}
_LEVELS = {"info": "INFO", "warning": "WARN", "critical": "ERROR"}
_SCOPE = re.compile(r"^[^/\s]+/[^/\s]+$")
DEFAULT_BASE_URL = "https://api.wandb.ai"


# -- small helpers -----------------------------------------------------------------------------
def _status(err: BaseException) -> int | None:
    """HTTP status behind a wandb error, looking through CommError wrappers."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        resp = getattr(e, "response", None)
        status = getattr(resp, "http_status", None)
        if status:
            return int(status)
        e = getattr(e, "exc", None) or e.__cause__
    m = re.search(r"\bHTTP (\d{3})\b", str(err))  # errors from wandb.init carry it in the text only
    return int(m.group(1)) if m else None


def _message(err: BaseException) -> str:
    """The error's text on one line, credentials masked (the client quotes the URLs it called)."""
    lines = [ln.strip() for ln in redact(str(err)).strip().splitlines() if ln.strip()]
    return "; ".join(lines)[:300] if lines else type(err).__name__


def _is_gone(err: BaseException) -> bool:
    if _status(err) == 404:
        return True
    e: BaseException | None = err
    while e is not None:
        if type(e).__name__ == "RunNotFoundError" or "could not find run" in str(e).lower() \
                or "not found" in str(e).lower() and "run" in str(e).lower():
            return True
        e = getattr(e, "exc", None) or e.__cause__
    return False


def _delete(run: Any, what: str) -> None:
    """Delete a run through the API; one already gone is what deleting wanted."""
    try:
        run.delete()
    except Exception as err:  # noqa: BLE001
        if not _is_gone(err):
            raise _tracker_error(err, what) from None


def _tracker_error(err: BaseException, what: str) -> TrackerError:
    status = _status(err)
    if status in (401, 403):
        return TrackerError(f"W&B refused the credentials while {what} (HTTP {status}); "
                            "check WANDB_API_KEY / `wandb login` and the entity's permissions")
    if status == 429:
        return TrackerError(f"W&B kept rate-limiting while {what} (HTTP 429) after the client's "
                            "retries; try again later or lower --workers")
    detail = f"HTTP {status}: " if status else ""
    return TrackerError(f"W&B error while {what}: {detail}{_message(err)}")


def _number(v: Any) -> float | None:
    """A history/summary value as a float (NaN/inf kept), or None when it is not a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"):
        return float(v.replace("Infinity", "inf"))
    return None


def _summary_value(key: str, value: Any) -> Any:
    """Numbers where the UI should sort and plot them (final value, interval, ETA); text otherwise."""
    if isinstance(value, str) and key.rsplit(".", 1)[-1] in NUMERIC_TAGS:
        try:
            x = float(value)
        except ValueError:
            return value
        return int(x) if x.is_integer() and key.endswith("step") else x
    return value


def _forecast_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``forecast`` block a companion run carries in its config ({} for a user's run)."""
    block = config.get("forecast")
    if isinstance(block, Mapping) and "value" in block and set(block) <= {"value", "desc"}:
        block = block["value"]
    return dict(block) if isinstance(block, Mapping) else {}


def _summary_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """The engine's ``forecast.*`` tags from a source run's summary (stored as a nested dict)."""
    block = summary.get("forecast")
    if not isinstance(block, Mapping):
        return {}
    return {TAG_PREFIX + str(k): str(v) for k, v in block.items()}


def companion_id(scope: str, source_id: str, input_fp: str, attempt: int = 0) -> str:
    """Deterministic companion run id: source id + hash(source, input watermark, forecaster version)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", source_id)[:40]
    digest = fingerprint(scope, source_id, input_fp, __version__)[:10]
    suffix = f"-{attempt + 1}" if attempt else ""
    return f"{stem}-fc-{digest}{suffix}"


def _own_summary_tags(kind: str, summary: Mapping[str, Any]) -> dict[str, str]:
    """The ``forecast.*`` tags of a summary run; ``forecast.input`` only when it was written completely.

    An unfinished summary run (a sync that stopped mid-write) is still listed with its kind, so the
    engine sees it is not current, writes a new one and then deletes it.
    """
    tags = _summary_tags(summary)
    complete = tags.pop(TAG_PREFIX + "complete", None) == "True"
    if not complete:
        tags.pop(TAG_INPUT, None)
    tags[TAG_KIND] = kind
    return tags


def summary_id(scope: str, kind: str, input_fp: str, attempt: int = 0) -> str:
    """Deterministic summary run id: kind + hash(project, kind, input fingerprint, forecaster version)."""
    digest = fingerprint(scope, kind, input_fp, __version__)[:10]
    suffix = f"-{attempt + 1}" if attempt else ""
    return f"{kind}-{digest}{suffix}"


def _is_summary(job_type: str | None, config: Mapping[str, Any]) -> bool:
    """True for a summary run this plugin wrote: job_type and the config's forecast block agree."""
    block = _forecast_config(config)
    return job_type in SUMMARY_KINDS and block.get("kind") == job_type and block.get("summary") is True


def _summary_block_value(key: str, value: str) -> Any:
    """Interval bounds and levels as numbers (the runs table sorts them); fingerprints stay text."""
    if key.endswith((".lo", ".hi", ".level")):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _param_value(value: str) -> Any:
    """A summary param as a W&B config value: int or float when it reads as one, text otherwise."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def alert_text(alert: Any, source: RunInfo) -> tuple[str, str, str]:
    """(title, text, level) of a W&B alert raised from a companion run about its source run."""
    where = source.url or f"{source.scope}/{source.id}"
    title = f"forecast: {alert.rule.replace('_', ' ')} - {source.name or source.id}"
    text = f"Run {source.label} ({where}): {alert.message}"
    return title[:128], text, _LEVELS.get(getattr(alert, "severity", "warning"), "WARN")


@dataclass
class _Rows:
    """The companion's history: one row per future step, curves, bands and LR merged."""

    steps: list[int]
    rows: list[dict[str, float]]


def revision_rows(revision: ForecastRevision) -> _Rows:
    """Merge every series of the revision (curves, bands, planned LR) into one row per step."""
    by_step: dict[int, dict[str, float]] = {}
    for key, steps, values in revision.series():
        for s, v in zip(steps.tolist(), values.tolist()):
            by_step.setdefault(int(s), {})[key] = float(v)
    steps = sorted(by_step)
    return _Rows(steps, [by_step[s] for s in steps])


# -- history cache (incremental reads from the last watermark) -----------------------------------
class _HistoryCache:
    """Per (server, run, key) arrays already read, so a sync scans only from the last cached step.

    A cached series is trusted only if the server still holds the same value at its last step
    (the scan starts *at* that step); a rewound or rewritten run is read again from scratch.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, ident: str, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / f"{fingerprint(ident, key)}.npz"

    def get(self, ident: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path(ident, key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as z:
                return z["steps"].astype(np.int64), z["values"].astype(np.float64)
        except (OSError, ValueError, KeyError):
            return None

    def put(self, ident: str, key: str, steps: np.ndarray, values: np.ndarray) -> None:
        path = self._path(ident, key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, steps=steps, values=values)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a longer read next time


def _default_cache_dir() -> Path:
    base = os.environ.get("WANDB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "wandb")
    return Path(base) / "forecaster-history"


# -- the adapter ---------------------------------------------------------------------------------
class WandbTracker(Tracker):
    """Weights & Biases: runs of ENTITY/PROJECT online, or the offline runs of a wandb folder."""

    name: ClassVar[str] = "wandb"
    options: ClassVar[tuple[TrackerOption, ...]] = (
        TrackerOption("project", "W&B ENTITY/PROJECT to sync (repeatable)", multiple=True),
        TrackerOption("wandb-dir", "offline / air-gapped: the wandb folder holding offline-run-* "
                      "(or a folder containing it); forecasts are written as offline runs that "
                      "`wandb sync` uploads later", envvar="FORECAST_WANDB_DIR"),
    )

    def __init__(self, *, uri: str | None = None, experiments: Sequence[str] = (),
                 filter: str | None = None, project: Sequence[str] | str | None = None,  # noqa: A002
                 wandb_dir: str | None = None, workers: int | str = 8, page_size: int | str = 1000,
                 cache_dir: str | None = None, timeout: int | str = 60, **options: Any) -> None:
        scopes = list(experiments)
        if isinstance(project, str):
            scopes.append(project)
        elif project:
            scopes.extend(project)
        super().__init__(uri=uri, experiments=scopes, filter=filter, **options)
        try:
            self.workers = max(1, int(workers))
            self.page_size = max(10, int(page_size))
            self.timeout = max(1, int(timeout))
        except (TypeError, ValueError):
            raise InputError("workers, page_size and timeout must be whole numbers") from None
        self.filters: dict[str, Any] = {}
        if filter:
            try:
                parsed = json.loads(filter)
            except ValueError:
                raise InputError(f"--filter for W&B is a JSON object of W&B run filters "
                                 f"(e.g. '{{\"state\": \"running\"}}'), got {filter!r}") from None
            if not isinstance(parsed, dict):
                raise InputError("--filter for W&B must be a JSON object, e.g. '{\"group\": \"sweep-3\"}'")
            self.filters = parsed
        self.wandb_dir: Path | None = None
        if wandb_dir:
            from forecaster_wandb.offline import find_wandb_dir

            self.wandb_dir = find_wandb_dir(wandb_dir)
        for s in self.experiments:
            if not _SCOPE.match(s):
                if s in experiments:  # --experiment / [sync] experiments, the MLflow word
                    raise InputError(f"W&B has projects, not experiments: --experiment {s!r} is read as a "
                                     f"project; give it as ENTITY/PROJECT, e.g. --project YOUR-ENTITY/{s}")
                raise InputError(f"--project {s!r}: give it as ENTITY/PROJECT")
        if self.wandb_dir is None and not self.experiments:
            raise InputError("W&B needs --project ENTITY/PROJECT (online) or --wandb-dir DIR (offline runs)")
        # checked before the client sees it: a malformed URL would be quoted whole in its errors
        self.base_url = canonical_uri(self.uri or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
        self._orphans: list[tuple[RunInfo, str]] = []
        if cache_dir is None:
            cache_root: Path | None = None if self.wandb_dir is not None else _default_cache_dir()
        else:
            cache_root = Path(cache_dir) if cache_dir else None
        self._cache = _HistoryCache(cache_root)
        self._api_obj: Any = None
        self._api_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._offline_runs: dict[str, Any] = {}  # offline: source/companion id -> OfflineRun
        self._write_lock = threading.Lock()  # offline companions, one at a time

    # -- plumbing ---------------------------------------------------------------------------------
    def describe(self) -> str:
        if self.wandb_dir is not None:
            return f"wandb offline {self.wandb_dir}"
        base = mask_uri(self.uri or os.environ.get("WANDB_BASE_URL", ""))
        return f"wandb {base} {','.join(self.experiments)}".strip()

    def identity(self) -> list[str]:
        """Offline: the resolved wandb folder; online: the canonical base URL and each ENTITY/PROJECT."""
        if self.wandb_dir is not None:
            return [f"wandb|offline|{self.wandb_dir.resolve()}"]
        return sorted({f"wandb|{self.base_url}|{s}" for s in self.experiments})

    def orphaned_forecasts(self) -> list[tuple[RunInfo, str]]:
        """Companions whose source run was deleted (online, without --filter; found by the last listing)."""
        return list(self._orphans)

    @property
    def offline(self) -> bool:
        return self.wandb_dir is not None

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
                    if "Usage" in name or "Auth" in name or _status(err) in (401, 403):
                        raise TrackerError(f"cannot log in to W&B ({_message(err)}); set WANDB_API_KEY "
                                           "or run `wandb login`") from None
                    raise _tracker_error(err, "connecting") from None
            return self._api_obj

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="wandb-read")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._api_obj = None

    # -- reading ----------------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        if self.offline:
            return self._list_offline()
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
            if self.filters and _status(err) == 400:
                raise InputError(f"--filter was refused by W&B as a run filter: {_message(err)}") from None
            raise _tracker_error(err, f"listing runs of {scope}") from None
        companions = [c for c in ours if c.job_type == JOB_TYPE]
        summaries = [c for c in ours if _is_summary(c.job_type, c.config)]
        by_source: dict[str, list[tuple[str, str, bool]]] = {}
        for c in companions:
            block = _forecast_config(c.config)
            if block.get("kind") == KIND_FORECAST and block.get("source"):
                by_source.setdefault(str(block["source"]), []).append(
                    (str(c.created_at or ""), c.id, self._marked_complete(c)))
        infos = []
        for r in runs:
            if r.job_type == JOB_TYPE or _forecast_config(r.config).get("kind") == KIND_FORECAST \
                    or _is_summary(r.job_type, r.config):
                continue
            mine = sorted(by_source.get(r.id, []))
            info = self._info(scope, r, [cid for _, cid, complete in mine if complete])
            info.partial = [cid for _, cid, complete in mine if not complete]
            infos.append(info)
        infos.extend(self._summary_info(scope, r) for r in summaries)
        if not self.filters:
            # with a filter a missing source may only be filtered out; without one it is gone, once
            # the API confirms it (a listing page can shift under a concurrent delete)
            listed = {r.id for r in runs}
            for src, made in sorted(by_source.items()):
                if src not in listed and self._get_run(f"{scope}/{src}") is None:
                    stand_in = RunInfo(id=src, name=src, scope=scope, status=FAILED)
                    self._orphans.extend((stand_in, cid) for _, cid, _ in made)
        return infos

    def _summary_info(self, scope: str, r: Any) -> RunInfo:
        """A summary run as the engine sees it: its kind always, its input only once it is complete."""
        return RunInfo(id=r.id, name=r.name or r.id, scope=scope, status=_STATES.get(str(r.state).lower(), FAILED),
                       tags=_own_summary_tags(r.job_type, r.summary_metrics or {}), url=r.url)

    def _info(self, scope: str, r: Any, forecasts: list[str]) -> RunInfo:
        summary = dict(r.summary_metrics or {})
        keys_info = r._attrs.get("historyKeys") or {}
        if isinstance(keys_info, str):
            keys_info = json.loads(keys_info or "{}")
        last = keys_info.get("lastStep")
        if last is None:
            last = summary.get("_step", -1)
        ts = summary.get("_timestamp")
        ts_ms = int(float(ts) * 1000) if isinstance(ts, (int, float)) else 0
        latest: dict[str, Watermark] = {}
        logged = set((keys_info.get("keys") or {}).keys())
        for k, v in summary.items():
            x = _number(v)
            if k.startswith("_") or x is None or (logged and k not in logged):
                continue
            latest[k] = Watermark(step=int(last), timestamp=ts_ms, value=x)
        return RunInfo(
            id=r.id, name=r.name or r.id, scope=scope,
            status=_STATES.get(str(r.state).lower(), FAILED),
            latest=latest, config=dict(r.config or {}), tags=_summary_tags(summary),
            forecasts=forecasts, url=r.url,
            extra={"storage_id": r.storage_id, "wandb_tags": list(r.tags or []),
                   "group": r.group, "last_step": int(last), "history_keys": sorted(logged)},
        )

    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        if self.offline:
            for run in runs:
                yield run, self._offline_histories(run, keys)
            return
        api = self._api()
        pending: set[Future] = set()
        todo = list(runs)
        by_future: dict[Future, RunInfo] = {}
        pool = self._executor()
        while todo or pending:
            while todo and len(pending) < self.workers * 2:
                run = todo.pop(0)
                fut = pool.submit(self._run_histories, api, run, list(keys))
                by_future[fut] = run
                pending.add(fut)
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                run = by_future.pop(fut)
                try:
                    yield run, fut.result()
                except RunGone as gone:
                    yield run, gone

    def _run_histories(self, api: Any, run: RunInfo, keys: list[str]) -> dict[str, Series]:
        logged = set(run.extra.get("history_keys") or [])
        out: dict[str, Series] = {}
        for key in keys:
            if logged and key not in logged:
                continue  # never logged: absent, as the interface says
            series = self._scan_key(api, run, key)
            if series is not None:
                out[key] = series
        return out

    def _scan_key(self, api: Any, run: RunInfo, key: str) -> Series | None:
        base = canonical_uri(api.settings.get("base_url", ""))
        ident = f"{base}|{run.scope}/{run.id}|{run.extra.get('storage_id', '')}"
        last_step = int(run.extra.get("last_step", -1))
        cached = self._cache.get(ident, key)
        start = 0
        if cached is not None and len(cached[0]) and int(cached[0][-1]) <= last_step:
            start = int(cached[0][-1])
        new_s, new_v = self._scan(api, run, key, start)
        if start and cached is not None:
            cs, cv = cached
            same = len(new_s) and new_s[0] == cs[-1] and (
                new_v[0] == cv[-1] or (math.isnan(new_v[0]) and math.isnan(cv[-1])))
            if same:
                new_s = np.concatenate([cs, new_s[1:]])
                new_v = np.concatenate([cv, new_v[1:]])
            else:  # the run changed under the cache (rewound, rewritten): read it all again
                self._cache.put(ident, key, np.zeros(0, np.int64), np.zeros(0))
                return self._scan_key(api, run, key) if cached[0].size else None
        if not len(new_s) and not logged_any(run, key):
            return None
        series = clean_series(new_s, new_v)
        self._cache.put(ident, key, series.steps, series.values)
        return series

    def _scan(self, api: Any, run: RunInfo, key: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of `key` from step `start` on (one key per scan: see the module doc)."""
        try:
            wrun = api.run(f"{run.scope}/{run.id}")
            rows = wrun.scan_history(keys=[key], page_size=self.page_size, min_step=start)
            steps: list[int] = []
            values: list[float] = []
            for row in rows:
                x = _number(row.get(key))
                if x is None or "_step" not in row:
                    continue
                steps.append(int(row["_step"]))
                values.append(x)
        except Exception as err:  # noqa: BLE001
            # wandb-core words a vanished run in several ways: ask the server whether it still exists
            if _is_gone(err) or self._get_run(f"{run.scope}/{run.id}", fresh=True, quiet=True) is None:
                raise RunGone(f"run {run.label} was deleted or became unreadable during the sync") from None
            raise _tracker_error(err, f"reading {key!r} of run {run.label}") from None
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def read_since(self, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Tails of histories: online a `scan_history` from each start step; offline, cut from the log.

        The engine's cache holds what was read before, so this adapter's own cache is bypassed.
        Exact points (no sampling): W&B's sampled history differs between calls.
        """
        if self.offline:
            for run in runs:
                want = since.get(run.id, {})
                got = self._offline_histories(run, list(want))
                if isinstance(got, RunGone):
                    yield run, got
                    continue
                yield run, {k: s if want[k] is None else Series(s.steps[s.steps >= want[k]],
                                                                 s.values[s.steps >= want[k]])
                            for k, s in got.items()}
            return
        api = self._api()
        pool = self._executor()

        def tails(run: RunInfo) -> dict[str, Series]:
            logged = set(run.extra.get("history_keys") or [])
            out = {}
            for key, start in since.get(run.id, {}).items():
                if logged and key not in logged:
                    continue
                steps, values = self._scan(api, run, key, 0 if start is None else int(start))
                if len(steps) or logged_any(run, key):
                    out[key] = clean_series(steps, values)
            return out

        futures = {pool.submit(tails, r): r for r in runs}
        try:
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except RunGone as gone:
                    yield futures[fut], gone
        finally:
            for fut in futures:
                fut.cancel()

    # -- writing ----------------------------------------------------------------------------------
    def create_forecast(self, revision: ForecastRevision) -> str:
        rows = revision_rows(revision)
        if not rows.steps:
            raise InputError(f"forecast of {revision.source.label} has no points to write")
        if self.offline:
            with self._write_lock:  # one scratch folder at a time next to the user's runs
                return self._create_offline(revision, rows)
        # wandb >= 0.19 runs several runs per process (reinit="create_new"): the engine's write
        # threads each fill their own companion, about 3x faster than one at a time.
        return self._create_online(revision, rows)

    def _companion_config(self, revision: ForecastRevision) -> dict[str, Any]:
        block = {k[len(TAG_PREFIX):] if k.startswith(TAG_PREFIX) else k: v for k, v in revision.tags.items()}
        block.update({"kind": KIND_FORECAST, "source": revision.source.id, "input": revision.input,
                      "version": __version__, "source_url": revision.source.url or ""})
        return {"forecast": block}

    def _init_kwargs(self, revision: ForecastRevision, cid: str) -> dict[str, Any]:
        import wandb

        src = revision.source
        entity, _, project = src.scope.partition("/")
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                                  x_disable_machine_info=True, disable_git=True, save_code=False,
                                  disable_job_creation=True, x_save_requirements=False,
                                  **({"base_url": self.uri} if self.uri else {}))
        return dict(entity=entity or None, project=project or None, id=cid,
                    name=revision.name or f"{src.name or src.id} forecast",
                    group=f"forecast:{src.id}", job_type=JOB_TYPE, tags=[KIND_FORECAST],
                    config=self._companion_config(revision), reinit="create_new", settings=settings,
                    notes=f"Forecast of run {src.label} made by forecaster {__version__}.")

    def _write(self, run: Any, revision: ForecastRevision, rows: _Rows) -> None:
        """Log every row, the plot, the summary and the alerts into an open companion run."""
        for step, row in zip(rows.steps, rows.rows):
            run.log(row, step=step)
        summary: dict[str, Any] = {"source": revision.source.id, "input": revision.input, "complete": True}
        for key, fc in revision.curves.items():
            if fc.final is not None:
                summary[f"final.{key}"] = fc.final
        if revision.plot_png:
            path = Path(run.dir) / revision.plot_name
            path.write_bytes(revision.plot_png)
            run.save(str(path), base_path=run.dir, policy="now")
        run.summary["forecast"] = summary
        for alert in revision.alerts:
            title, text, level = alert_text(alert, revision.source)
            run.alert(title=title, text=text, level=level, wait_duration=1)

    def _create_online(self, revision: ForecastRevision, rows: _Rows) -> str:
        import wandb

        src = revision.source
        for attempt in range(5):
            cid = companion_id(src.scope, src.id, revision.input, attempt)
            existing = self._get_run(f"{src.scope}/{cid}")
            if existing is not None:
                if self._complete(existing, revision, len(rows.steps)):
                    return cid  # an earlier sync wrote it and crashed before set_tags: reuse it
                self._delete_run(existing, src, cid)  # half-written: deleted ids cannot be reused
                continue
            try:
                run = wandb.init(mode="online", **self._init_kwargs(revision, cid))
            except Exception as err:  # noqa: BLE001
                if "is in use" in str(err):  # a failed init earlier in this process holds the id
                    continue
                self._cleanup_failed(None, src, cid)
                raise _tracker_error(err, f"writing the forecast of run {src.label}") from None
            try:
                self._write(run, revision, rows)
                run.finish(exit_code=0)
                run = None
                written = self._get_run(f"{src.scope}/{cid}", fresh=True)
                if written is None or not self._complete(written, revision, len(rows.steps)):
                    raise TrackerError(f"companion run {cid} of {src.label} did not arrive complete")
                return cid
            except Exception as err:  # noqa: BLE001 - clean up, then report one clear error
                self._cleanup_failed(run, src, cid)
                if isinstance(err, (TrackerError, InputError)):
                    raise
                raise _tracker_error(err, f"writing the forecast of run {src.label}") from None
        raise TrackerError(f"could not find a free companion id for run {src.label}")

    def _cleanup_failed(self, run: Any, src: RunInfo, cid: str) -> None:
        """Best effort: close a half-written companion and delete what reached the server."""
        # _delete_run checks it is our companion first
        self._cleanup(run, f"{src.scope}/{cid}", lambda left: self._delete_run(left, src, cid))

    def _cleanup(self, run: Any, path: str, delete: Any) -> None:
        """Finish a half-written run of ours, then delete whatever of it reached the server."""
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

    def _get_run(self, path: str, fresh: bool = False, quiet: bool = False) -> Any:
        """The run at `path` via the API, or None when it does not exist."""
        api = self._api()
        try:
            run = api.run(path)
            if fresh:
                run.load_full_data(force=True)
            return run
        except Exception as err:  # noqa: BLE001
            if quiet or _is_gone(err):
                return None
            raise _tracker_error(err, f"looking up run {path}") from None

    @staticmethod
    def _marked_complete(run: Any) -> bool:
        """A finished companion whose summary carries the `complete` mark written last."""
        block = (run.summary_metrics or {}).get("forecast") or {}
        return str(run.state) == "finished" and isinstance(block, Mapping) and block.get("complete") is True

    @classmethod
    def _complete(cls, run: Any, revision: ForecastRevision, n_rows: int) -> bool:
        """Marked complete, for this revision's input, with all its rows."""
        block = (run.summary_metrics or {}).get("forecast") or {}
        return (cls._marked_complete(run) and block.get("input") == revision.input
                and int(run._attrs.get("historyLineCount") or 0) >= n_rows)

    def set_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        if not tags:
            return
        if self.offline:
            self._set_tags_offline(run, tags)
            return
        wrun = self._get_run(f"{run.scope}/{run.id}", fresh=True)
        if wrun is None:
            raise RunGone(f"run {run.label} was deleted during the sync")
        try:
            block = dict(wrun.summary_metrics.get("forecast") or {})
            rest: dict[str, Any] = {}
            for k, v in tags.items():
                short = k[len(TAG_PREFIX):] if k.startswith(TAG_PREFIX) else None
                if short is None:
                    rest[k] = _summary_value(k, v)
                elif v is None:  # the engine's way of removing a tag
                    block.pop(short, None)
                else:
                    block[short] = _summary_value(short, v)
            wrun.summary.update({"forecast": block, **rest})
            if any(k.startswith(ALERT_TAG_PREFIX) for k in tags):
                self._mirror_alert_tags(wrun, block)
        except Exception as err:  # noqa: BLE001
            if isinstance(err, (TrackerError, RunGone)):
                raise
            if _is_gone(err):
                raise RunGone(f"run {run.label} was deleted during the sync") from None
            raise _tracker_error(err, f"annotating run {run.label}") from None

    def _mirror_alert_tags(self, wrun: Any, block: Mapping[str, Any]) -> None:
        """Firing alerts as W&B tags ``forecast:<rule>`` (filterable in the UI); other tags untouched."""
        from forecaster.notify import alert_state  # scipy behind it: not at adapter import

        short = ALERT_TAG_PREFIX[len(TAG_PREFIX):]
        wanted = sorted(WANDB_TAG_PREFIX + k[len(short):] for k, v in block.items()
                        if k.startswith(short) and v is not None and alert_state(str(v)) != "ok")
        current = list(wrun.tags or [])
        new = [t for t in current if not t.startswith(WANDB_TAG_PREFIX)] + wanted
        if new == current:
            return
        # Only id and tags: run.update() would also rewrite the config and the whole summary.
        mutation = """
        mutation UpsertBucket($id: String!, $tags: [String!]) {
            upsertBucket(input: {id: $id, tags: $tags}) { bucket { id tags } }
        }"""
        wrun._service_api.execute_graphql(mutation, {"id": wrun.storage_id, "tags": new})

    def stop_run(self, run: RunInfo) -> str:
        """Ask W&B to stop the run (the stop request the UI's Stop button sends); the client exits it.

        W&B flags the run and the training process's wandb client stops it at its next heartbeat;
        we never write the run's state. Offline runs have no server to ask: only the annotation
        ``forecast.stop_requested`` is written (by the engine), and a line says so.
        """
        if self.offline:
            return (f"offline W&B run {run.label} cannot be stopped remotely: annotated {TAG_STOP}=true "
                    "(stop the training process yourself)")
        wrun = self._get_run(f"{run.scope}/{run.id}")
        if wrun is None:
            raise RunGone(f"run {run.label} was deleted during the sync")
        try:
            wrun.stop()
        except Exception as err:  # noqa: BLE001
            if _is_gone(err):
                raise RunGone(f"run {run.label} was deleted during the sync") from None
            raise _tracker_error(err, f"stopping run {run.label}") from None
        return f"asked W&B to stop run {run.label}"

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        if self.offline:
            self._delete_offline(run, forecast_id)
            return
        existing = self._get_run(f"{run.scope}/{forecast_id}")
        if existing is None:
            return
        self._delete_run(existing, run, forecast_id)

    def _delete_run(self, existing: Any, source: RunInfo, cid: str) -> None:
        block = _forecast_config(existing.config)
        if existing.job_type != JOB_TYPE or block.get("source") != source.id:
            # Never delete anything that is not this run's companion, whatever the tags say.
            raise InputError(f"refusing to delete run {cid}: it is not a forecast companion of {source.label}")
        _delete(existing, f"deleting superseded forecast {cid}")

    # -- summary runs (forecast sync --scaling) -----------------------------------------------------
    def create_summary(self, revision: SummaryRevision) -> str:
        """A finished run of its own in the project: params in config, intervals and predictions in summary.

        Deterministic id (`summary_id`), ``job_type`` = the kind (``scaling``), group
        ``forecast:<kind>``; the files (plot, JSON) are attached. Read back to check it is complete
        before returning; a half-written one is removed (best effort) and the error raised.
        """
        if revision.kind not in SUMMARY_KINDS:
            raise InputError(f"the W&B adapter writes summary runs of kind {', '.join(SUMMARY_KINDS)}, "
                             f"not {revision.kind!r}")
        if self.offline:
            with self._write_lock:
                return self._create_summary_offline(revision)
        return self._create_summary_online(revision)

    def _summary_init_kwargs(self, revision: SummaryRevision, sid: str) -> dict[str, Any]:
        import wandb

        entity, _, project = revision.scope.partition("/")
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                                  x_disable_machine_info=True, disable_git=True, save_code=False,
                                  disable_job_creation=True, x_save_requirements=False,
                                  **({"base_url": self.uri} if self.uri and not self.offline else {}))
        config = {"forecast": {"kind": revision.kind, "summary": True, "input": revision.input,
                               "version": __version__},
                  revision.kind: {k: _param_value(v) for k, v in revision.params.items()}}
        return dict(entity=entity or None, project=project or None, id=sid, name=revision.name,
                    group=f"forecast:{revision.kind}", job_type=revision.kind, tags=[revision.kind],
                    config=config, reinit="create_new", settings=settings,
                    notes=f"{revision.name} of {revision.scope}, written by forecaster {__version__}; "
                          "superseded revisions are deleted.")

    @staticmethod
    def _write_summary(run: Any, revision: SummaryRevision) -> None:
        """Files first, the values and then the ``complete`` mark last into an open summary run."""
        for name, data in revision.artifacts.items():
            path = Path(run.dir) / name
            path.write_bytes(data)
            run.save(str(path), base_path=run.dir, policy="now")
        block: dict[str, Any] = {}
        for k, v in revision.tags.items():
            short = k[len(TAG_PREFIX):] if k.startswith(TAG_PREFIX) else k
            block[short] = _summary_block_value(short, str(v))
        block.update(kind=revision.kind, input=revision.input, complete=True)
        values: dict[str, Any] = {k: float(v) for k, v in revision.metrics.items() if math.isfinite(v)}
        run.summary.update({**values, "forecast": block})

    @staticmethod
    def _summary_complete(run: Any, revision: SummaryRevision) -> bool:
        block = (run.summary_metrics or {}).get("forecast") or {}
        return (str(run.state) == "finished" and _is_summary(run.job_type, run.config)
                and isinstance(block, Mapping) and block.get("complete") is True
                and block.get("input") == revision.input)

    def _create_summary_online(self, revision: SummaryRevision) -> str:
        import wandb

        what = f"writing the {revision.kind} summary run of {revision.scope}"
        for attempt in range(5):
            sid = summary_id(revision.scope, revision.kind, revision.input, attempt)
            path = f"{revision.scope}/{sid}"
            existing = self._get_run(path)
            if existing is not None:
                if self._summary_complete(existing, revision):
                    return sid  # an earlier sync wrote it and stopped before deleting the old one
                self._delete_summary_run(existing, revision.scope, sid)  # half-written: ids are not reused
                continue
            try:
                run = wandb.init(mode="online", **self._summary_init_kwargs(revision, sid))
            except Exception as err:  # noqa: BLE001
                if "is in use" in str(err):
                    continue
                self._cleanup_summary(None, revision.scope, sid)
                raise _tracker_error(err, what) from None
            try:
                self._write_summary(run, revision)
                run.finish(exit_code=0)
                run = None
                written = self._get_run(path, fresh=True)
                if written is None or not self._summary_complete(written, revision):
                    raise TrackerError(f"summary run {sid} of {revision.scope} did not arrive complete")
                return sid
            except Exception as err:  # noqa: BLE001
                self._cleanup_summary(run, revision.scope, sid)
                if isinstance(err, (TrackerError, InputError)):
                    raise
                raise _tracker_error(err, what) from None
        raise TrackerError(f"could not find a free summary run id in {revision.scope}")

    def _cleanup_summary(self, run: Any, scope: str, sid: str) -> None:
        """Best effort: close a half-written summary run and delete what reached the server."""
        self._cleanup(run, f"{scope}/{sid}", lambda left: self._delete_summary_run(left, scope, sid))

    def delete_summary(self, summary: RunInfo) -> None:
        if self.offline:
            self._delete_summary_offline(summary)
            return
        existing = self._get_run(f"{summary.scope}/{summary.id}")
        if existing is not None:
            self._delete_summary_run(existing, summary.scope, summary.id)

    @staticmethod
    def _delete_summary_run(existing: Any, scope: str, sid: str) -> None:
        if not _is_summary(existing.job_type, existing.config):
            # Never delete anything that is not our summary run, whatever its tags say.
            raise InputError(f"refusing to delete run {sid} of {scope}: it is not a forecaster summary run")
        _delete(existing, f"deleting superseded summary run {sid}")

    # -- offline mode -------------------------------------------------------------------------------
    def _list_offline(self) -> list[RunInfo]:
        from forecaster_wandb.offline import read_dir

        assert self.wandb_dir is not None
        memo = self._load_offsets()
        runs, bad = read_dir(self.wandb_dir, memo)
        self._save_offsets(memo)
        self.unreadable = bad  # for the engine's report, if it looks
        state = self._load_state()
        companions: dict[str, list[tuple[str, str]]] = {}
        sources = []
        self._offline_runs = {}
        summaries = []
        for r in runs:
            block = _forecast_config(r.config)
            if _is_summary(r.job_type, r.config):
                self._offline_runs["summary:" + r.id] = r
                summaries.append(RunInfo(
                    id=r.id, name=r.name or r.id,
                    scope=f"{r.entity}/{r.project}" if r.entity or r.project else str(self.wandb_dir),
                    status=RUNNING if r.exit_code is None else (FINISHED if r.exit_code == 0 else FAILED),
                    tags=_own_summary_tags(r.job_type, r.summary), extra={"dir": str(r.dir)}))
                continue
            if r.job_type == JOB_TYPE or block.get("kind") == KIND_FORECAST:
                if r.exit_code == 0 and block.get("source"):
                    companions.setdefault(str(block["source"]), []).append((r.dir.name, r.id))
                    self._offline_runs["companion:" + r.id] = r
                continue
            sources.append(r)
        infos = []
        for r in sources:
            scope = f"{r.entity}/{r.project}" if r.entity or r.project else str(self.wandb_dir)
            self._offline_runs[r.id] = r
            latest = {}
            for key, (steps, values) in r.series.items():
                if steps:
                    latest[key] = Watermark(step=int(r.last_step), timestamp=len(steps), value=float(values[-1]))
            infos.append(RunInfo(
                id=r.id, name=r.name or r.id, scope=scope,
                status=RUNNING if r.exit_code is None else (FINISHED if r.exit_code == 0 else FAILED),
                latest=latest, config=dict(r.config), tags=dict(state.get(r.id, {})),
                forecasts=[cid for _, cid in sorted(companions.get(r.id, []))],
                url=None, extra={"dir": str(r.dir), "wandb_tags": list(r.tags), "group": r.group,
                                 "last_step": r.last_step, "history_keys": sorted(r.series)}))
        return infos + summaries

    def _offline_histories(self, run: RunInfo, keys: Sequence[str]) -> dict[str, Series] | RunGone:
        r = self._offline_runs.get(run.id)
        if r is None or not Path(r.file).exists():
            return RunGone(f"offline run {run.label} disappeared during the sync")
        out = {}
        for key in keys:
            if key in r.series:
                steps, values = r.history(key)
                out[key] = clean_series(steps, values)
        return out

    def _create_offline(self, revision: ForecastRevision, rows: _Rows) -> str:
        from forecaster_wandb.offline import read_run, run_dirs

        assert self.wandb_dir is not None
        src = revision.source
        cid = companion_id(src.scope, src.id, revision.input)
        for d in run_dirs(self.wandb_dir):
            if d.name.endswith("-" + cid):
                done = read_run(d)
                if done.exit_code == 0 and _forecast_config(done.config).get("input") == revision.input:
                    return cid
                shutil.rmtree(d)  # a half-written companion of ours: write it again
        self._write_offline(
            self._init_kwargs(revision, cid), lambda run: self._write(run, revision, rows),
            lambda check: bool(check.series), f"offline companion {cid} of {src.label}",
            f"the offline forecast of {src.label}")
        return cid

    def _write_offline(self, init_kwargs: dict[str, Any], write: Any, complete: Any, name: str, what: str) -> None:
        """Write one offline run and move it into DIR only once it reads back complete."""
        import wandb

        from forecaster_wandb.offline import OFFLINE_PREFIX

        assert self.wandb_dir is not None
        # Written in a scratch folder inside DIR, then renamed in: the user's `latest-run` and
        # debug-log links stay as they were, and a crash never leaves a half run among theirs.
        scratch = Path(tempfile.mkdtemp(prefix=".forecaster-", dir=self.wandb_dir))
        run = None
        try:
            run = wandb.init(mode="offline", dir=str(scratch), **init_kwargs)
            write(run)
            run.finish(exit_code=0)
            run = None
            made = [d for d in (scratch / "wandb").iterdir() if d.name.startswith(OFFLINE_PREFIX)]
            if len(made) != 1:
                raise TrackerError(f"wandb wrote {len(made)} offline runs for {name}")
            check = _settled(made[0])
            if check.exit_code != 0 or not complete(check):
                raise TrackerError(f"{name} was not written completely")
            os.rename(made[0], self.wandb_dir / made[0].name)
        except Exception as err:  # noqa: BLE001
            if run is not None:
                try:
                    run.finish(exit_code=1)
                except Exception:  # noqa: BLE001
                    pass
            if isinstance(err, (TrackerError, InputError)):
                raise
            raise TrackerError(f"writing {what} failed: {_message(err)}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _create_summary_offline(self, revision: SummaryRevision) -> str:
        """The summary run as one more offline run in DIR (scratch folder, renamed in once complete)."""
        from forecaster_wandb.offline import read_run, run_dirs

        assert self.wandb_dir is not None
        sid = summary_id(revision.scope, revision.kind, revision.input)
        for d in run_dirs(self.wandb_dir):
            if d.name.endswith("-" + sid):
                done = read_run(d)
                if not _is_summary(done.job_type, done.config):
                    raise InputError(f"{d} holds run id {sid} but is not a forecaster summary run")
                if done.exit_code == 0 and (done.summary.get("forecast") or {}).get("complete") is True:
                    return sid
                shutil.rmtree(d)  # a half-written summary run of ours: write it again
        self._write_offline(
            self._summary_init_kwargs(revision, sid), lambda run: self._write_summary(run, revision),
            lambda check: (check.summary.get("forecast") or {}).get("complete") is True,
            f"offline summary run {sid} of {revision.scope}", f"the offline summary run of {revision.scope}")
        return sid

    def _delete_summary_offline(self, summary: RunInfo) -> None:
        from forecaster_wandb.offline import read_run, run_dirs

        assert self.wandb_dir is not None
        for d in run_dirs(self.wandb_dir):
            if not d.name.endswith("-" + summary.id):
                continue
            r = read_run(d)
            if not _is_summary(r.job_type, r.config):
                raise InputError(f"refusing to delete {d}: it is not a forecaster summary run")
            shutil.rmtree(d)

    def _delete_offline(self, run: RunInfo, forecast_id: str) -> None:
        from forecaster_wandb.offline import read_run, run_dirs

        assert self.wandb_dir is not None
        for d in run_dirs(self.wandb_dir):
            if not d.name.endswith("-" + forecast_id):
                continue
            r = read_run(d)
            block = _forecast_config(r.config)
            if r.job_type != JOB_TYPE or block.get("source") != run.id:
                raise InputError(f"refusing to delete {d}: it is not a forecast companion of {run.label}")
            shutil.rmtree(d)

    def _load_offsets(self) -> dict[str, Any]:
        """The parse of each offline log so far and the byte offset reached (see offline.read_dir)."""
        assert self.wandb_dir is not None
        try:
            data = json.loads((self.wandb_dir / OFFSETS_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:  # only costs a full parse; rewritten below
            log.warning("%s is unreadable (%s): parsing every offline log from the start",
                        self.wandb_dir / OFFSETS_FILE, e)
            return {}
        return data if isinstance(data, dict) and data.get("version") == 1 else {}

    def _save_offsets(self, memo: dict[str, Any]) -> None:
        assert self.wandb_dir is not None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.wandb_dir, prefix=".forecaster-offsets-")
            with os.fdopen(fd, "w") as f:
                json.dump({**memo, "version": 1}, f)
            os.replace(tmp, self.wandb_dir / OFFSETS_FILE)
        except OSError as e:  # a read-only wandb folder: every sync parses the logs in full
            log.debug("cannot save %s: %s", OFFSETS_FILE, e)

    def _load_state(self) -> dict[str, dict[str, str]]:
        assert self.wandb_dir is not None
        path = self.wandb_dir / STATE_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InputError(f"{path} is not readable JSON; delete it to start the offline state afresh") from None
        return data if isinstance(data, dict) else {}

    def _set_tags_offline(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        assert self.wandb_dir is not None
        state = self._load_state()
        entry = dict(state.get(run.id, {}))
        entry.update({k: str(v) for k, v in tags.items()})
        state[run.id] = entry
        fd, tmp = tempfile.mkstemp(dir=self.wandb_dir, prefix=".forecaster-state-")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.wandb_dir / STATE_FILE)


def _settled(run_dir: Path, timeout: float = 30.0) -> Any:
    """Read an offline run once wandb-core has flushed its exit record (finish() may return first)."""
    import time

    from forecaster_wandb.offline import read_run

    deadline = time.monotonic() + timeout
    while True:
        run = read_run(run_dir)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def logged_any(run: RunInfo, key: str) -> bool:
    """True when the run's listing says it logged `key` (an empty scan then means an empty series)."""
    return key in set(run.extra.get("history_keys") or [])


# keep the public names the engine and the docs refer to
__all__ = ["WandbTracker", "companion_id", "summary_id", "revision_rows", "alert_text", "TAG_KIND", "TAG_SOURCE",
           "TAG_RUN_ID", "TAG_INPUT"]
