"""Planning: what the sync does with each run, decided from the listing alone (nothing is read).

A run's `Plan` holds its group, resolved config, schedule, planned end and fingerprint, or why it
cannot be forecast; `triage` sorts every run into unchanged, skipped, ended (context) or to forecast,
and picks the siblings read as context for pooled fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forecaster import screen, tags
from forecaster.config import ConfigMapping
from forecaster.errors import InputError
from forecaster.histories import median_interval, steps_until
from forecaster.runconfig import SIZE_KEYS, STEPS_KEYS
from forecaster.sync.report import Action, RunOutcome, Skip, SkipKind
from forecaster.sync.runtags import skip_tags
from forecaster.sync.settings import SyncSettings
from forecaster.trackers import RunInfo, fingerprint

# a config that says nothing usable about the run's LR: not read even as context for its siblings
NO_PLAN = frozenset({SkipKind.BAD_CONFIG, SkipKind.NO_SCHEDULE, SkipKind.NO_PLANNED_END})


def _lookup(run: RunInfo, key: str) -> Any:
    """A param/config or tag value by name; 'params.x' / 'config.x' / 'tags.x' pick the source."""
    if key.startswith(("params.", "config.")):
        return run.config.get(key.split(".", 1)[1])
    if key.startswith("tags."):
        return run.tags.get(key[5:])
    return run.config.get(key, run.tags.get(key))


def group_of(run: RunInfo, group_by: str | None) -> str:
    """The fitting group: the run's experiment, or experiment + the value of `group_by`."""
    if not group_by:
        return run.scope
    v = _lookup(run, group_by)
    return f"{run.scope}/{group_by}={v}" if v is not None else f"{run.scope}/{group_by}=?"


def run_config(run: RunInfo, mapping: ConfigMapping) -> dict[str, Any]:
    """Params/config plus a ``forecast.schedule`` tag, passed through the config file's mapping."""
    cfg = dict(run.config)
    spec = run.tags.get(tags.SCHEDULE)
    if spec and tags.SCHEDULE not in cfg:
        cfg[tags.SCHEDULE] = spec
    return mapping.apply(cfg, run.id, run.name)


def _int_of(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = cfg.get(k)
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x > 0:
            return int(x)
    return None


def _float_of(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        try:
            x = float(cfg.get(k))
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x > 0:
            return x
    return None


@dataclass
class Plan:
    """A run's resolved inputs before any history is read."""

    run: RunInfo
    group: str
    config: dict[str, Any]
    schedule: Any = None
    total: int | None = None
    lr_key: str | None = None
    fp: str = ""
    skip: Skip | None = None  # why it cannot be forecast (known without reading)
    size: float | None = None
    # keys whose listed latest point is a stray step (beyond `stray_above`): MLflow keeps the
    # highest step as the latest, so such a watermark no longer moves as the run trains on
    stray: tuple[str, ...] = ()

    @property
    def stray_above(self) -> float:
        """Steps beyond this are stray writes (STEP_SLACK x the planned end)."""
        return screen.STEP_SLACK * self.total if self.total else math.inf

    @property
    def reason(self) -> str | None:
        """The skip reason's text, or None."""
        return None if self.skip is None else str(self.skip)


def plan_run(run: RunInfo, settings: SyncSettings) -> Plan:
    """Resolve a run's schedule, planned end and fingerprint from what the listing already holds."""
    from forecaster import schedules

    cfg = run_config(run, settings.mapping)
    lr_key = next((k for k in settings.lr_keys if k in run.latest), None)
    marks = [(k, run.latest[k].token()) for k in (*settings.metrics, *settings.lr_keys) if k in run.latest]
    p = Plan(run, group_of(run, settings.group_by), cfg, lr_key=lr_key, size=_float_of(cfg, SIZE_KEYS),
             fp=fingerprint(settings.token(), marks, sorted((str(k), str(v)) for k, v in cfg.items())))
    primary = settings.primary
    if primary not in run.latest:
        p.skip = Skip(SkipKind.NO_DATA, f"metric {primary!r} not logged yet")
        return p
    try:
        p.schedule = schedules.from_config(cfg)
    except InputError as e:
        p.skip = Skip(SkipKind.BAD_CONFIG, str(e))
        return p
    if p.schedule is None and lr_key is None:
        p.skip = Skip(SkipKind.NO_SCHEDULE,
                      f"no LR metric ({', '.join(settings.lr_keys)}) and no usable schedule "
                      "in the config (HF lr_scheduler_type + max_steps, nanoGPT lr_decay_iters/max_iters, "
                      "or a forecast.schedule spec)")
        return p
    p.total = (p.schedule.total if p.schedule is not None else None) or _int_of(cfg, STEPS_KEYS)
    if p.total is None:
        p.skip = Skip(SkipKind.NO_PLANNED_END, "the LR is logged but the planned last step is unknown "
                      "(log max_steps or a forecast.schedule spec with total=)")
        return p
    p.stray = tuple(k for k, _ in marks if run.latest[k].step > p.stray_above)
    if p.total > screen.MAX_STEPS:
        p.skip = Skip(SkipKind.BAD_CONFIG, f"planned end {p.total:,} is beyond {screen.MAX_STEPS:,} steps")
    elif p.total <= run.latest[primary].step <= screen.STEP_SLACK * p.total:
        # (a latest step far beyond the plan is a stray write: the run is read and screened)
        p.skip = Skip(SkipKind.DONE, f"reached its planned last step {p.total}")
    return p


def horizon(steps: np.ndarray, total: int, max_points: int) -> np.ndarray:
    """Future steps to forecast: the logging interval (coarser when needed) up to and including `total`."""
    last = int(steps[-1]) if len(steps) else 0
    stride = max(median_interval(steps), math.ceil((total - last) / max(1, max_points - 1)))
    return steps_until(last, total, stride)


def leftovers(runs: list[RunInfo]) -> list[tuple[RunInfo, str]]:
    """Forecast runs to delete before anything else: incomplete ones, and every complete one but the
    one the source's tags name (or, when they name none of them, the newest). Updates the runs."""
    out = []
    for r in runs:
        keep = r.tags.get(tags.RUN_ID)
        if keep not in r.forecasts:
            keep = r.forecasts[-1] if r.forecasts else None
        out += [(r, f) for f in r.partial] + [(r, f) for f in r.forecasts if f != keep]
        r.partial = []
        r.forecasts = [keep] if keep else []
    return out


@dataclass
class Triage:
    """Every run's plan and what is known of it before reading: settled runs and runs with work."""

    plans: dict[str, Plan]
    targets: list[Plan] = field(default_factory=list)  # to read and forecast
    context: list[Plan] = field(default_factory=list)  # siblings of targets, read for the pooled fits
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)  # runs settled without reading
    tag_only: list[tuple[RunInfo, dict[str, str | None]]] = field(default_factory=list)  # skip tags to write


def unchanged(p: Plan, settings: SyncSettings, checked: bool = False) -> bool:
    """Same inputs as the last sync and its result still in place (nor an alert to retry).

    A run under a stray watermark cannot be judged from the listing: only once `checked` (its
    fingerprint completed from the history read, `read.restamp`)."""
    t = p.run.tags
    status = t.get(tags.STATUS)
    return (not settings.force and (checked or not p.stray) and t.get(tags.INPUT) == p.fp and not t.get(tags.ALERT_RETRY)
            and ((status == tags.STATUS_OK and t.get(tags.RUN_ID) in p.run.forecasts)
                 or status == tags.STATUS_SKIPPED))


def triage(runs: list[RunInfo], settings: SyncSettings) -> Triage:
    """Plan every run; settle the ended, unchanged and unforecastable ones; choose what to read."""
    out = Triage({r.id: plan_run(r, settings) for r in runs})
    for p in out.plans.values():
        r = p.run
        if not (r.active or settings.include_ended):
            out.outcomes[r.id] = RunOutcome(r, Action.CONTEXT)
        elif unchanged(p, settings):
            out.outcomes[r.id] = RunOutcome(r, Action.UNCHANGED)
        elif p.skip is not None:
            out.outcomes[r.id] = RunOutcome(r, Action.SKIPPED, p.skip)
            out.tag_only.append((r, skip_tags(p, p.skip)))
        else:
            out.targets.append(p)
    # pooled fits: every run of a group that has work, with LR information, is read as context
    target_ids = {p.run.id for p in out.targets}
    groups = {p.group for p in out.targets}
    out.context = [p for p in out.plans.values() if p.group in groups and p.run.id not in target_ids
                   and settings.primary in p.run.latest and (p.schedule is not None or p.lr_key is not None)
                   and not (p.skip is not None and p.skip.kind in NO_PLAN)]
    return out
