"""The small interface every experiment-tracker adapter implements, and how adapters are found.

An adapter is a class registered under the ``forecaster.trackers`` entry-point group (see
``plugins/forecaster_mlflow``). The sync engine (`forecaster.sync`) talks to trackers only through
this interface, Optuna-storage style: a handful of coarse calls, each a few requests.

    list_runs()          one paged search: every run in scope with status, the latest-metric
                         watermark per key, params, tags, config and its live forecast runs
    read_histories()     full metric histories of some runs, read concurrently
    read_since()         the tails of histories from given steps on, optionally sampled (the
                         history cache's way in; a default built on read_histories exists)
    create_forecast()    a new, complete forecast run (MLflow: a run beside the source; W&B: a companion run)
    set_tags()           key-value annotations on a source run (MLflow tags, W&B summary)
    delete_forecast()    remove a superseded forecast run
    stop_run()           optional, opt-in only (`forecast sync --stop-runs`): ask to stop a run

The engine orders a revision as create -> set_tags (point ``forecast.run_id`` at the new run) ->
delete old, so a crash at any point leaves one complete forecast that the tags name. Adapters
must never change a source run's status, end time or own metric series, and must keep their
module import light (import the tracker's client lazily): the CLI loads every adapter class to
build its options.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.metadata
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from forecaster import DISTRIBUTION
from forecaster import tags
from forecaster.errors import InputError, RunGone, TrackerError  # noqa: F401  (adapters import them from here)
from forecaster.redact import mask_uri

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.alerts import Alert
    from forecaster.histories import RunForecast

ENTRY_POINT_GROUP = "forecaster.trackers"

# normalised run states; adapters map their tracker's states onto these
RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATES = (RUNNING, FINISHED, FAILED, KILLED)

# tag/summary keys the engine reads back from RunInfo.tags (the adapter must round-trip them)
TAG_PREFIX = tags.PREFIX
TAG_KIND = tags.KIND
KIND_SCALING = tags.KIND_SCALING
TAG_SOURCE = tags.SOURCE
LEGACY_TAG_SOURCE = tags.LEGACY_SOURCE
TAG_RUN_ID = tags.RUN_ID
TAG_INPUT = tags.INPUT
KIND_FORECAST = tags.KIND_FORECAST
TAG_STOP = tags.STOP


@dataclass(frozen=True)
class Watermark:
    """The latest point of one metric as the tracker's run search reports it (no history read)."""

    step: int
    timestamp: int = 0
    value: float = float("nan")

    def token(self) -> str:
        """Stable text for fingerprints (NaN-safe)."""
        return f"{self.step}:{self.timestamp}:{self.value!r}"


@dataclass
class RunInfo:
    """One run as listed: identity, state, latest-metric watermarks, config and live forecast runs.

    ``config`` is what schedules are read from: params/config values (strings as MLflow stores
    them, or native values from W&B). ``tags`` are key-value annotations including the
    ``forecast.*`` keys this engine wrote (W&B adapters return them from the run summary).
    ``forecasts`` lists the ids of this run's complete, live forecast runs, oldest first;
    ``partial`` those a crashed sync left incomplete (the engine deletes them before anything else).
    """

    id: str
    name: str
    scope: str  # experiment id (MLflow) or entity/project (W&B)
    status: str  # one of STATES
    latest: dict[str, Watermark] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    forecasts: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-private (e.g. the client's run object)

    @property
    def active(self) -> bool:
        return self.status == RUNNING

    @property
    def label(self) -> str:
        """Short human name for logs: name (id prefix)."""
        return f"{self.name} ({self.id[:8]})" if self.name and self.name != self.id else self.id


@dataclass
class Series:
    """One metric's full history: sorted unique steps; NaN/inf kept (the engine counts them)."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


def clean_series(steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray,
                 timestamps: Sequence[int] | np.ndarray | None = None) -> Series:
    """Sort by step and keep one value per step: the last by timestamp (then by arrival) wins."""
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    t = np.zeros(len(s), dtype=np.int64) if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    if not len(s):
        return Series(s, v)
    # lexsort: last key is primary; arrival index breaks timestamp ties so the later write wins
    order = np.lexsort((np.arange(len(s)), t, s))
    s, v = s[order], v[order]
    keep = np.ones(len(s), dtype=bool)
    keep[:-1] = s[1:] != s[:-1]
    return Series(s[keep], v[keep])


@dataclass
class ForecastRevision:
    """Everything one forecast run holds; `create_forecast` writes it completely or raises.

    ``curves`` maps each metric key to its forecast, logged under that same key at the future
    steps with the bands under ``<key>.p10`` / ``<key>.p90`` (``band_keys``). ``lr`` is the
    planned LR at the horizon, logged under ``lr_key`` when the source logs its LR. ``alerts``
    are newly firing alerts, for trackers that raise alerts from a live run (W&B).
    """

    source: RunInfo
    input: str  # fingerprint of the inputs; deterministic ids may use it
    curves: dict[str, "RunForecast"]
    tags: dict[str, str] = field(default_factory=dict)  # extra tags/config for the forecast run
    lr_key: str | None = None
    lr_steps: np.ndarray | None = None
    lr_values: np.ndarray | None = None
    plot_png: bytes | None = None
    plot_name: str = "forecast.png"
    alerts: list["Alert"] = field(default_factory=list)
    name: str = ""

    @staticmethod
    def band_keys(metric: str) -> tuple[str, str]:
        """The keys the p10/p90 bands of `metric` are logged under."""
        return f"{metric}.p10", f"{metric}.p90"

    def series(self, budget: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Every series to log as (key, steps, values): each curve, its bands, the planned LR.

        With a `budget`, each series keeps at most ``budget // len(series)`` points, denser near the
        join where the curve bends most, so the whole forecast fits one atomic write (a chart
        samples a few hundred points per series anyway).
        """
        out: list[tuple[str, np.ndarray, np.ndarray]] = []
        for key, fc in self.curves.items():
            lo_key, hi_key = self.band_keys(key)
            steps = np.asarray(fc.steps, dtype=np.int64)
            out += [(key, steps, np.asarray(fc.p50)), (lo_key, steps, np.asarray(fc.p10)),
                    (hi_key, steps, np.asarray(fc.p90))]
        if self.lr_key and self.lr_steps is not None and len(self.lr_steps):
            ok = np.isfinite(np.asarray(self.lr_values, dtype=float))
            out.append((self.lr_key, np.asarray(self.lr_steps, dtype=np.int64)[ok],
                        np.asarray(self.lr_values, dtype=float)[ok]))
        if budget is None or not out:
            return out
        keep = max(2, budget // len(out))
        return [(k, st[i], v[i]) for k, st, v in out for i in [thin(len(st), keep)]]


def thin(n: int, k: int) -> np.ndarray:
    """Indices of at most `k` of `n` points, first and last included, spaced closer near the first."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round((n - 1) * np.linspace(0.0, 1.0, k) ** 1.5).astype(np.int64))


@dataclass
class SummaryRevision:
    """A complete summary run of one scope (experiment / project), e.g. its scaling-law fit.

    Not a child of any run. ``tags`` must include ``forecast.kind`` (``kind``) and
    ``forecast.input`` so that `list_runs` returns the run with them and the engine can tell it
    apart from the user's runs and see whether it is current. ``params`` are fixed values (MLflow
    params, W&B config), ``metrics`` single values, ``artifacts`` file name -> content.
    """

    scope: str
    kind: str
    input: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackerOption:
    """A command-line option an adapter adds to `forecast sync` (passed to its constructor)."""

    name: str  # "wandb-dir" -> --wandb-dir, constructor keyword wandb_dir
    help: str
    envvar: str | None = None
    is_flag: bool = False
    multiple: bool = False

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


class Tracker(abc.ABC):
    """An experiment tracker as the sync engine sees it (one instance per sync).

    The constructor takes keyword options: ``uri`` (tracking server / base URL), ``experiments``
    (names or ids in scope: MLflow experiments, W&B projects), ``filter`` (the tracker's own
    filter syntax), plus the adapter's `options`. Settings that reach it from the config file's
    ``[tracker]`` table arrive the same way. Raise `InputError` for bad options and
    `TrackerError` when the tracker cannot be reached.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[TrackerOption, ...]] = ()

    def __init__(self, *, uri: str | None = None, experiments: Sequence[str] = (),
                 filter: str | None = None, **options: Any) -> None:  # noqa: A002 - tracker term
        self.uri = uri
        self.experiments = list(experiments)
        self.filter = filter
        self.extra_options = options
        # how many revisions may be written at once (None: the engine's choice); an embedded
        # single-file store (SQLite) sets 1 rather than fail with "database is locked"
        self.max_write_workers: int | None = None

    def describe(self) -> str:
        """One line naming what is synced, free of secrets (for logs)."""
        return f"{self.name} {mask_uri(self.uri) if self.uri else ''} {','.join(self.experiments)}".strip()

    def identity(self) -> list[str]:
        """What this sync writes to, one key per scope, the same for every spelling of it.

        The lock and any state kept between syncs are keyed by these, so that `URI` and `URI/`,
        the URI from the environment and from a flag, or an experiment by name and by id, can
        never sync the same runs at once. The default: the tracker name, `canonical_uri` and each
        scope as given. Adapters that can resolve scope names to ids (connecting if need be,
        read-only) override it; the CLI calls it before taking the lock, so before `list_runs`.
        """
        base = canonical_uri(self.uri)
        return sorted({f"{self.name}|{base}|{s}" for s in self.experiments} or {f"{self.name}|{base}|"})

    def scope_url(self, scope: str) -> str | None:
        """Where the tracker's UI draws a scope's runs beside their forecasts (None: no web UI known)."""
        return None

    # optional: summary runs of a whole scope (`forecast sync --scaling`); list_runs returns them
    # as RunInfo with their forecast.kind tag, and the engine keeps them apart from source runs
    @property
    def supports_summaries(self) -> bool:
        """True when the adapter implements `create_summary` and `delete_summary`."""
        return type(self).create_summary is not Tracker.create_summary

    def create_summary(self, revision: SummaryRevision) -> str:
        """Write a complete, finished summary run in ``revision.scope``; return its id (optional)."""
        raise InputError(f"summary runs (sync --scaling) are not supported by the "
                         f"{self.name or type(self).__name__} tracker")

    def delete_summary(self, summary: RunInfo) -> None:
        """Delete a superseded summary run (absent already: no error) (optional)."""
        raise InputError(f"summary runs (sync --scaling) are not supported by the "
                         f"{self.name or type(self).__name__} tracker")

    @abc.abstractmethod
    def list_runs(self) -> list[RunInfo]:
        """Source runs in scope (forecast runs excluded, but attached to their source's `forecasts`)."""

    @abc.abstractmethod
    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Full histories of `keys` for each run, yielded as each completes (read concurrently).

        A key the run never logged is absent from its dict. A run that vanished yields `RunGone`.
        """

    def read_since(self, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """The tail of some histories: per run, the keys of ``since[run.id]`` from that step on.

        A start step is inclusive (the engine checks the cached point there); None asks for the
        whole history. ``max_points`` allows an adapter to return fewer points per series, evenly
        spaced with the first and last of the window kept (as MLflow's sampled history does);
        exact is always allowed. Yielded as each run completes, like `read_histories`.

        This default reads the full histories and cuts them; adapters whose tracker can read from
        a step on (or many runs per request) override it.
        """
        keys = list(dict.fromkeys(k for r in runs for k in since.get(r.id, {})))
        for run, got in self.read_histories(runs, keys):
            if isinstance(got, RunGone):
                yield run, got
                continue
            out = {}
            for key, start in since.get(run.id, {}).items():
                s = got.get(key)
                if s is not None:
                    out[key] = s if start is None else Series(s.steps[s.steps >= start], s.values[s.steps >= start])
            yield run, out

    @abc.abstractmethod
    def create_forecast(self, revision: ForecastRevision) -> str:
        """Write a complete new forecast run for ``revision.source``; return its id.

        Must be complete (all points, artifacts, finished state) before returning; on failure
        it tries to remove what it wrote and raises. A run killed while writing must be listed
        as ``partial``, and should draw nothing in the tracker's UI until it is complete.
        """

    @abc.abstractmethod
    def set_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        """Upsert key-value annotations on a source run without touching its state or history."""

    @abc.abstractmethod
    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        """Delete a superseded forecast run of `run` (absent already: no error)."""

    def orphaned_forecasts(self) -> list[tuple[RunInfo, str]]:
        """Live forecast runs whose source run is gone (deleted), as found by the last `list_runs`.

        Each as (a stand-in RunInfo of the source: id and scope, forecast id); the engine deletes
        them like superseded forecasts. Optional: the default finds none.
        """
        return []

    def stop_run(self, run: RunInfo) -> str:
        """Ask the tracker to stop a running run (opt-in only); return one line saying what was done.

        Called only when the user opted in (``--stop-runs``) and a stop rule fires. Adapters that
        can stop a run remotely request it (the run ends itself; its status is never written by
        us); others may mark it. The default cannot: it raises NotImplementedError.
        """
        raise NotImplementedError(f"the {self.name or type(self).__name__} adapter cannot stop runs")

    def close(self) -> None:
        """Release clients and pools."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- discovery ---------------------------------------------------------------------------------
def available() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed adapters by name (entry points of the ``forecaster.trackers`` group)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _extras() -> set[str]:
    """The extras this package declares (mlflow, wandb, ...), from its installed metadata."""
    try:
        return set(importlib.metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or ()) - {"dev"}
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return set()


def load(name: str) -> type[Tracker]:
    """The adapter class registered as `name`; InputError naming what is installed otherwise."""
    eps = available()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        if name in _extras():
            hint = f"pip install '{DISTRIBUTION}[{name}]'"
        else:  # no extra of that name: pointing at one would send the user to a pip error
            hint = (f"an adapter for it would come from a package registering a {ENTRY_POINT_GROUP!r} "
                    "entry point")
        raise InputError(f"unknown tracker {name!r} (installed: {known}); {hint}")
    try:
        cls = eps[name].load()
    except ImportError as e:
        raise InputError(f"tracker {name!r} needs a package that is not installed ({e.name or e}); "
                         f"pip install '{DISTRIBUTION}[{name}]'") from None
    if not (isinstance(cls, type) and issubclass(cls, Tracker)):
        raise InputError(f"entry point {name!r} does not name a forecaster.trackers.Tracker subclass")
    return cls


# -- canonical addresses ---------------------------------------------------------------------------
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^[a-z0-9_~%-]+(?:\.[a-z0-9_~%-]+)*\.?$")
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def canonical_uri(uri: str | None) -> str:
    """One spelling of a tracker address, for identity: never shown with credentials, never raises but InputError.

    Scheme and host lowercased, a default port dropped, no trailing slash, no user info, query
    or fragment; a local store (plain path, ``file:``, ``sqlite:///``) as an absolute path. A URI
    that cannot be a network address (a space in the host, a port that is not a number in
    1-65535) is bad input, reported with the URI masked.
    """
    from urllib.parse import urlsplit

    if not uri:
        return ""
    text = str(uri).strip()
    m = _URI_SCHEME.match(text)
    if not m or (len(m.group(1)) == 1 and os.name == "nt"):  # a path (C:\ on Windows)
        if text.lower() in ("databricks", "databricks-uc"):  # MLflow's names, not paths
            return text.lower()
        return "file://" + _abs_path(text)
    scheme = m.group(1).lower()
    rest = text[m.end():]
    if scheme == "file" or scheme.startswith("sqlite"):
        path = rest[2:] if rest.startswith("//") else rest
        path = re.split(r"[?#]", path, maxsplit=1)[0]
        if scheme.startswith("sqlite"):
            # sqlite:///relative.db, sqlite:////absolute.db; sqlite:// alone is in memory
            path = path[1:] if path.startswith("/") else path
            return f"{scheme}:///{_abs_path(path)}" if path and path != ":memory:" else f"{scheme}://"
        return "file://" + _abs_path(path)
    if not rest.startswith("//"):  # databricks, databricks-uc, a profile name
        return f"{scheme}:{rest.rstrip('/')}"
    bad = f"tracking URI {mask_uri(text)}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        reason = "a port must be a number from 1 to 65535" if "port" in str(e).lower() else "malformed"
        raise InputError(f"{bad} is not a valid address: {reason}") from None
    host = (parts.hostname or "").lower()
    if scheme in _DEFAULT_PORTS or host:
        if not host:
            raise InputError(f"{bad} is not a valid address: no host name")
        if not (_HOST.match(host) or _is_ip6(host)) or any(c.isspace() for c in parts.netloc):
            raise InputError(f"{bad} is not a valid address: the host name {mask_uri(host)!r} holds characters "
                             "a host name cannot have")
        if port == 0:
            raise InputError(f"{bad} is not a valid address: a port must be a number from 1 to 65535")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _is_ip6(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _abs_path(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def fingerprint(*parts: Any) -> str:
    """Short stable hash of the parts' text (what a forecast was made from)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


__all__ = [
    "ENTRY_POINT_GROUP", "RUNNING", "FINISHED", "FAILED", "KILLED", "STATES", "TAG_PREFIX", "TAG_KIND",
    "TAG_SOURCE", "LEGACY_TAG_SOURCE", "TAG_RUN_ID", "TAG_INPUT", "TAG_STOP", "KIND_FORECAST", "TrackerError", "RunGone", "Watermark",
    "RunInfo", "Series", "clean_series", "ForecastRevision", "thin", "TrackerOption", "Tracker", "available",
    "load", "fingerprint", "canonical_uri",
]
