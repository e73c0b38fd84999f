"""The ``forecast.*`` tags a sync writes on a source run, and what the drawn ones say."""

from __future__ import annotations

import contextlib
import datetime as _dt
from typing import TYPE_CHECKING

from forecaster import __version__, tags
from forecaster.histories import RunForecast, RunHistory
from forecaster.sync.report import RunOutcome, Skip
from forecaster.sync.settings import KEEP_SHARE, SyncSettings

if TYPE_CHECKING:  # plan.py imports this module
    from forecaster.sync.plan import Plan

# a tag value longer than this is cut (tracker limits; a note or spec that long says enough by then)
MAX_TAG = 500
# tags of the alert state: on the source run only, never copied onto its forecast run
ALERT_KEYS = (tags.ALERT_PREFIX, tags.ALERT_HASH_PREFIX, tags.ALERTS, tags.ALERT_RETRY)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TAG else text[:MAX_TAG - 3] + "..."


def skip_tags(p: Plan, skip: Skip) -> dict[str, str | None]:
    """Tags recording why a run was skipped (with its fingerprint, so the next sync stays quiet)."""
    out: dict[str, str | None] = {tags.STATUS: tags.STATUS_SKIPPED, tags.SKIPPED: str(skip), tags.INPUT: p.fp}
    if tags.ALERT_RETRY in p.run.tags:  # a skipped run has no alert left to deliver
        out[tags.ALERT_RETRY] = None
    return {k: v for k, v in out.items() if p.run.tags.get(k) != v}


def notes_tag(o: RunOutcome) -> dict[str, str | None]:
    """``forecast.notes``: what screening did to the run's data; removed once there is nothing to say."""
    if o.notes:
        return {tags.NOTES: _cut("; ".join(o.notes))}
    return {tags.NOTES: None} if tags.NOTES in o.run.tags else {}


def source_tags(p: Plan, fc: RunForecast, curves: dict[str, RunForecast], h: RunHistory,
                settings: SyncSettings) -> dict[str, str | None]:
    """The forecast.* summary on the source run (everything but the forecast run id)."""
    lo, hi = fc.final_interval
    marks = ",".join(f"{k}@{p.run.latest[k].step}" for k in settings.metrics if k in p.run.latest)
    out: dict[str, str | None] = {
        tags.STATUS: tags.STATUS_OK, tags.INPUT: p.fp, tags.WATERMARK: marks, tags.METRIC: fc.metric,
        tags.FINAL: f"{fc.final:.6g}", tags.FINAL_P10: f"{lo:.6g}", tags.FINAL_P90: f"{hi:.6g}",
        tags.FINAL_STEP: str(int(fc.steps[-1])), tags.LAW: fc.law or "",
        tags.UPDATED: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tags.VERSION: __version__,
    }
    if h.schedule is not None:
        with contextlib.suppress(Exception):
            out[tags.SCHEDULE_USED] = _cut(h.schedule.spec())
    for m, c in curves.items():
        if m != fc.metric:
            a, b = c.final_interval
            out[tags.metric_key(tags.FINAL, m, fc.metric)] = f"{c.final:.6g}"
            out[tags.metric_key(tags.FINAL_P10, m, fc.metric)] = f"{a:.6g}"
            out[tags.metric_key(tags.FINAL_P90, m, fc.metric)] = f"{b:.6g}"
    if tags.SKIPPED in p.run.tags:
        out[tags.SKIPPED] = None
    return out


def cooldown_tags(p: Plan, cooled: tuple[RunForecast, int] | None) -> dict[str, str | None]:
    """``forecast.if_cooldown_now.*``: the run cooled down now (final, band, length, a note while the
    response is not identified); removed once the run is no longer at constant LR."""
    if cooled is None:
        return {k: None for k in tags.IF_COOLDOWN_NOW if k in p.run.tags}
    fc, length = cooled
    lo, hi = fc.final_interval
    note = fc.unidentified
    return {tags.IF_COOLDOWN_NOW_FINAL: f"{fc.final:.6g}", tags.IF_COOLDOWN_NOW_P10: f"{lo:.6g}",
            tags.IF_COOLDOWN_NOW_P90: f"{hi:.6g}", tags.IF_COOLDOWN_NOW_LENGTH: str(int(length)),
            tags.IF_COOLDOWN_NOW_NOTE: _cut(note) if note else None}


def watermark_step(marks: str, metric: str) -> int | None:
    """The step of `metric` in a forecast.watermark tag ('loss@16000,eval_loss@15800')."""
    for part in marks.split(","):
        key, _, step = part.rpartition("@")
        if key == metric and step.isdigit():
            return int(step)
    return None


def still_drawn(p: Plan, curves: dict[str, RunForecast], settings: SyncSettings) -> bool:
    """Would the drawn forecast look the same? Every final and its band within KEEP_SHARE of the
    band's width, the same law and end, and the run not yet KEEP_SHARE of the way on from where
    the drawn forecast starts (past that its start lags visibly behind the real curve)."""
    t = p.run.tags
    primary = settings.primary
    fc = curves[primary]
    made = watermark_step(t.get(tags.WATERMARK, ""), primary)
    if (t.get(tags.STATUS) != tags.STATUS_OK or t.get(tags.RUN_ID) not in p.run.forecasts or made is None
            or t.get(tags.FINAL_STEP) != str(int(fc.steps[-1])) or t.get(tags.LAW) != fc.law):
        return False
    for m, c in curves.items():
        try:
            old, lo, hi = (float(t[tags.metric_key(k, m, primary)])
                           for k in (tags.FINAL, tags.FINAL_P10, tags.FINAL_P90))
        except (KeyError, ValueError):
            return False
        new_lo, new_hi = c.final_interval
        if max(abs(c.final - old), abs(new_lo - lo), abs(new_hi - hi)) > KEEP_SHARE * (hi - lo):
            return False
    return p.run.latest[primary].step - made <= KEEP_SHARE * (int(fc.steps[-1]) - made)
