"""What the online and offline W&B trackers share: options, how forecaster's own runs look, and writing them.

A forecast goes into a *companion run* per revision (deterministic id, ``job_type="forecast"``, a
group of its own) that logs the predicted curve under the source's own metric keys at future
steps, so W&B draws it as one more line in the same panel. A ``--scaling`` summary is a finished
run of its own (``job_type`` = its kind). Both carry a ``forecast`` block in their config that
tells them apart from the user's runs, and a ``complete`` mark written last into their summary.
The engine's ``forecast.*`` tags of a source run live in its summary as a nested ``forecast`` dict.
"""

from __future__ import annotations

import abc
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forecaster import __version__, tags
from forecaster.errors import InputError
from forecaster.trackers import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    ForecastRevision,
    RunInfo,
    SummaryRevision,
    Tracker,
    canonical_uri,
    fingerprint,
)
from forecaster_wandb.compat import quiet_settings

JOB_TYPE = tags.KIND_FORECAST  # job_type of companion runs: how they are told apart from the user's
SUMMARY_KINDS = (tags.KIND_SCALING,)  # summary runs of a whole project; their job_type is their kind
COMPLETE = "complete"  # summary-block mark written last: the run is whole
# short names (after "forecast.") of the tags stored as numbers in a run's summary
NUMERIC_TAGS = tuple(k[len(tags.PREFIX):] for k in (tags.FINAL, tags.FINAL_P10, tags.FINAL_P90,
                                                     tags.FINAL_STEP, tags.ETA_STEP))
WANDB_TAG_PREFIX = "forecast:"  # W&B tags mirroring firing alerts: forecast:<rule>
STATES = {"running": RUNNING, "pending": RUNNING, "finished": FINISHED, "failed": FAILED,
          "crashed": FAILED, "killed": KILLED, "preempted": KILLED, "preempting": KILLED}
_LEVELS = {"info": "INFO", "warning": "WARN", "critical": "ERROR"}
_SCOPE = re.compile(r"^[^/\s]+/[^/\s]+$")
DEFAULT_BASE_URL = "https://api.wandb.ai"


# -- values and blocks ---------------------------------------------------------------------------
def number(v: Any) -> float | None:
    """A history/summary value as a float (NaN/inf kept), or None when it is not a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"):
        return float(v.replace("Infinity", "inf"))
    return None


def summary_value(key: str, value: Any) -> Any:
    """Numbers where the UI should sort and plot them (final value, interval, ETA); text otherwise."""
    if isinstance(value, str) and key.rsplit(".", 1)[-1] in NUMERIC_TAGS:
        try:
            x = float(value)
        except ValueError:
            return value
        return int(x) if x.is_integer() and key.endswith("step") else x
    return value


def forecast_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``forecast`` block a companion run carries in its config ({} for a user's run)."""
    block = config.get("forecast")
    if isinstance(block, Mapping) and "value" in block and set(block) <= {"value", "desc"}:
        block = block["value"]
    return dict(block) if isinstance(block, Mapping) else {}


def summary_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """The engine's ``forecast.*`` tags from a source run's summary (stored as a nested dict)."""
    block = summary.get("forecast")
    if not isinstance(block, Mapping):
        return {}
    return {tags.PREFIX + str(k): str(v) for k, v in block.items()}


def own_summary_tags(kind: str, summary: Mapping[str, Any]) -> dict[str, str]:
    """The ``forecast.*`` tags of a summary run; ``forecast.input`` only when it was written completely.

    An unfinished summary run (a sync that stopped mid-write) is still listed with its kind, so the
    engine sees it is not current, writes a new one and then deletes it.
    """
    found = summary_tags(summary)
    complete = found.pop(tags.PREFIX + COMPLETE, None) == "True"
    if not complete:
        found.pop(tags.INPUT, None)
    found[tags.KIND] = kind
    return found


def is_summary(job_type: str | None, config: Mapping[str, Any]) -> bool:
    """True for a summary run this plugin wrote: job_type and the config's forecast block agree."""
    block = forecast_config(config)
    return job_type in SUMMARY_KINDS and block.get("kind") == job_type and block.get("summary") is True


def summary_block_value(key: str, value: str) -> Any:
    """Interval bounds and levels as numbers (the runs table sorts them); fingerprints stay text."""
    if key.endswith((".lo", ".hi", ".level")):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def param_value(value: str) -> Any:
    """A summary param as a W&B config value: int or float when it reads as one, text otherwise."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def short(key: str) -> str:
    """A ``forecast.*`` tag key without its prefix (the key inside a ``forecast`` block); others as is."""
    return key[len(tags.PREFIX):] if key.startswith(tags.PREFIX) else key


def logged_any(run: RunInfo, key: str) -> bool:
    """True when the run's listing says it logged `key` (an empty scan then means an empty series)."""
    return key in set(run.extra.get("history_keys") or [])


# -- ids, rows, alerts -----------------------------------------------------------------------------
def companion_id(scope: str, source_id: str, input_fp: str, attempt: int = 0) -> str:
    """Deterministic companion run id: source id + hash(source, input watermark, forecaster version)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", source_id)[:40]
    digest = fingerprint(scope, source_id, input_fp, __version__)[:10]
    suffix = f"-{attempt + 1}" if attempt else ""
    return f"{stem}-fc-{digest}{suffix}"


def summary_id(scope: str, kind: str, input_fp: str, attempt: int = 0) -> str:
    """Deterministic summary run id: kind + hash(project, kind, input fingerprint, forecaster version)."""
    digest = fingerprint(scope, kind, input_fp, __version__)[:10]
    suffix = f"-{attempt + 1}" if attempt else ""
    return f"{kind}-{digest}{suffix}"


def alert_text(alert: Any, source: RunInfo) -> tuple[str, str, str]:
    """(title, text, level) of a W&B alert raised from a companion run about its source run."""
    where = source.url or f"{source.scope}/{source.id}"
    title = f"forecast: {alert.rule.replace('_', ' ')} - {source.name or source.id}"
    text = f"Run {source.label} ({where}): {alert.message}"
    return title[:128], text, _LEVELS.get(getattr(alert, "severity", "warning"), "WARN")


@dataclass
class Rows:
    """The companion's history: one row per future step, curves, bands and LR merged."""

    steps: list[int]
    rows: list[dict[str, float]]


def revision_rows(revision: ForecastRevision) -> Rows:
    """Merge every series of the revision (curves, bands, planned LR) into one row per step."""
    by_step: dict[int, dict[str, float]] = {}
    for key, steps, values in revision.series():
        for s, v in zip(steps.tolist(), values.tolist()):
            by_step.setdefault(int(s), {})[key] = float(v)
    steps = sorted(by_step)
    return Rows(steps, [by_step[s] for s in steps])


# -- the shared tracker ----------------------------------------------------------------------------
class WandbCore(Tracker):
    """Options, validation and the writing of companion and summary runs, online or offline alike.

    Subclasses say where runs come from and where written runs go (`_create_forecast`,
    `_create_summary`, `_set_tags`, ...); the run's content is written here.
    """

    summary_base_url = True  # whether a summary run's settings carry --uri (offline ones do not)

    def __init__(self, *, uri: str | None = None, experiments: Sequence[str] = (),
                 filter: str | None = None, project: Sequence[str] | str | None = None,  # noqa: A002
                 wandb_dir: str | None = None, workers: int | str = 8, page_size: int | str = 1000,
                 cache_dir: str | None = None, timeout: int | str = 60, **options: Any) -> None:
        # cache_dir is the online tracker's (an option of both: the CLI passes it either way)
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
            from forecaster_wandb.offline_runs import find_wandb_dir

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

    # -- writing: the entry points check, the subclass places the run ------------------------------
    def create_forecast(self, revision: ForecastRevision) -> str:
        rows = revision_rows(revision)
        if not rows.steps:
            raise InputError(f"forecast of {revision.source.label} has no points to write")
        return self._create_forecast(revision, rows)

    @abc.abstractmethod
    def _create_forecast(self, revision: ForecastRevision, rows: Rows) -> str:
        """Write a complete companion run of `rows`; return its id."""

    def create_summary(self, revision: SummaryRevision) -> str:
        """A finished run of its own in the project: params in config, intervals and predictions in summary.

        Deterministic id (`summary_id`), ``job_type`` = the kind (``scaling``), group
        ``forecast:<kind>``; the files (plot, JSON) are attached. Read back to check it is complete
        before returning; a half-written one is removed (best effort) and the error raised.
        """
        if revision.kind not in SUMMARY_KINDS:
            raise InputError(f"the W&B adapter writes summary runs of kind {', '.join(SUMMARY_KINDS)}, "
                             f"not {revision.kind!r}")
        return self._create_summary(revision)

    @abc.abstractmethod
    def _create_summary(self, revision: SummaryRevision) -> str:
        """Write a complete summary run; return its id."""

    def set_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        if tags:
            self._set_tags(run, tags)

    @abc.abstractmethod
    def _set_tags(self, run: RunInfo, tags: Mapping[str, str]) -> None:
        """Upsert the (non-empty) annotations of a source run."""

    # -- the content of our runs -------------------------------------------------------------------
    @staticmethod
    def _companion_config(revision: ForecastRevision) -> dict[str, Any]:
        block = {short(k): v for k, v in revision.tags.items()}
        block.update({"kind": tags.KIND_FORECAST, "source": revision.source.id, "input": revision.input,
                      "version": __version__, "source_url": revision.source.url or ""})
        return {"forecast": block}

    def _init_kwargs(self, revision: ForecastRevision, cid: str) -> dict[str, Any]:
        """`wandb.init` arguments of a companion run."""
        src = revision.source
        entity, _, project = src.scope.partition("/")
        return dict(entity=entity or None, project=project or None, id=cid,
                    name=revision.name or f"{src.name or src.id} forecast",
                    group=f"forecast:{src.id}", job_type=JOB_TYPE, tags=[tags.KIND_FORECAST],
                    config=self._companion_config(revision), reinit="create_new",
                    settings=quiet_settings(self.uri),
                    notes=f"Forecast of run {src.label} made by forecaster {__version__}.")

    def _summary_init_kwargs(self, revision: SummaryRevision, sid: str) -> dict[str, Any]:
        """`wandb.init` arguments of a summary run."""
        entity, _, project = revision.scope.partition("/")
        config = {"forecast": {"kind": revision.kind, "summary": True, "input": revision.input,
                               "version": __version__},
                  revision.kind: {k: param_value(v) for k, v in revision.params.items()}}
        return dict(entity=entity or None, project=project or None, id=sid, name=revision.name,
                    group=f"forecast:{revision.kind}", job_type=revision.kind, tags=[revision.kind],
                    config=config, reinit="create_new",
                    settings=quiet_settings(self.uri if self.summary_base_url else None),
                    notes=f"{revision.name} of {revision.scope}, written by forecaster {__version__}; "
                          "superseded revisions are deleted.")

    @staticmethod
    def _write(run: Any, revision: ForecastRevision, rows: Rows) -> None:
        """Log every row, the plot, the summary and the alerts into an open companion run."""
        for step, row in zip(rows.steps, rows.rows):
            run.log(row, step=step)
        summary: dict[str, Any] = {"source": revision.source.id, "input": revision.input, COMPLETE: True}
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

    @staticmethod
    def _write_summary(run: Any, revision: SummaryRevision) -> None:
        """Files first, the values and then the ``complete`` mark last into an open summary run."""
        for name, data in revision.artifacts.items():
            path = Path(run.dir) / name
            path.write_bytes(data)
            run.save(str(path), base_path=run.dir, policy="now")
        block: dict[str, Any] = {}
        for k, v in revision.tags.items():
            block[short(k)] = summary_block_value(short(k), str(v))
        block.update(kind=revision.kind, input=revision.input, complete=True)
        values: dict[str, Any] = {k: float(v) for k, v in revision.metrics.items() if math.isfinite(v)}
        run.summary.update({**values, "forecast": block})
