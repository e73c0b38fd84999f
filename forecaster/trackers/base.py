"""The small interface every experiment-tracker adapter implements.

An adapter is a class registered under the ``forecaster.trackers`` entry-point group (found by
`forecaster.trackers.registry`; see ``plugins/forecaster_mlflow``). The sync engine
(`forecaster.sync`) talks to trackers only through this interface, Optuna-storage style: a
handful of coarse calls, each a few requests.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from forecaster.errors import InputError, RunGone
from forecaster.redact import mask_uri
from forecaster.trackers.records import ForecastRevision, RunInfo, SummaryRevision
from forecaster.trackers.series import Series
from forecaster.trackers.uri import canonical_uri


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
