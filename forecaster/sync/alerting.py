"""Alerts of a sync: rules evaluated on the fitted runs, webhooks delivered, stop requests chosen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from forecaster import tags
from forecaster.sync.fitting import Fits
from forecaster.sync.plan import Plan
from forecaster.sync.settings import SyncSettings
from forecaster.trackers import FINISHED


@dataclass
class Alerts:
    """Per run: alert tags to write, alerts sent (for the forecast run), firing messages; runs to stop."""

    tags: dict[str, dict[str, str | None]] = field(default_factory=dict)
    sent: dict[str, list] = field(default_factory=dict)
    firing: dict[str, list[str]] = field(default_factory=dict)
    stops: set[str] = field(default_factory=set)


def judge_alerts(runs: list[Plan], fits: Fits, plans: dict[str, Plan], settings: SyncSettings) -> Alerts:
    """Evaluate alert rules on `runs` (ready and diverged); deliver webhooks (not in a dry run).

    `stops`: running runs to ask the tracker to stop (opt-in `stop_runs` only; a run whose
    ``forecast.stop_requested`` tag is set was asked before and is never asked twice).
    """
    if not runs:
        return Alerts()
    try:
        from forecaster import alerts as al
        from forecaster import notify
    except ImportError:  # pragma: no cover - alerting not built in this checkout
        return Alerts()
    finished = {rid for rid, p in plans.items() if p.run.status == FINISHED}
    settings_a = settings.alert_settings or al.AlertSettings()
    if fits.cooldowns:  # anneal_now judges the "cooled down now" forecast the fit made
        settings_a = dataclasses.replace(settings_a, anneal_hook=lambda h: (fits.cooldowns.get(h.run) or (None,))[0])
    ctx = al.group_context(fits.pooled, finished=finished)
    by_run, tags_by_run, firing = {}, {}, {}
    for p in runs:
        h = fits.histories[p.run.id]
        fc = fits.curves[p.run.id].get(settings.primary)
        a = al.evaluate_alerts(h, fc, ctx.get(h.group), settings_a)
        by_run[p.run.id] = a
        tags_by_run[p.run.id] = p.run.tags
        firing[p.run.id] = [f"{x.rule}: {x.message}" for x in a if x.firing]
    ns = settings.notify_settings
    stops: set[str] = set()
    if ns is not None and ns.stop_runs:
        for p in runs:
            asked = str(p.run.tags.get(tags.STOP, "")).strip().lower() in ("true", "1", "yes")
            wanted = any(x.firing and x.rule in ns.stop_rules for x in by_run[p.run.id])
            if wanted and p.run.active and not asked and not notify.silenced(p.run.tags, "stop"):
                stops.add(p.run.id)
    if settings.dry_run:
        return Alerts(firing=firing, stops=stops)
    outcome = notify.process_alerts(by_run, tags_by_run, settings.notify_settings)
    new: dict[str, dict[str, str | None]] = {rid: dict(o.tags) for rid, o in outcome.items()}
    sent = {rid: o.sent for rid, o in outcome.items()}
    for rid, o in outcome.items():
        if o.failed:
            new[rid][tags.ALERT_RETRY] = f"{len(o.failed)} alert(s) not delivered; retried at the next sync"
        elif tags.ALERT_RETRY in tags_by_run[rid]:
            new[rid][tags.ALERT_RETRY] = None
    # ETA to target as a plain tag when a target is set
    for rid, alerts in by_run.items():
        for x in alerts:
            if x.rule == al.ETA_TO_TARGET and x.value is not None:
                new[rid][tags.ETA_STEP] = str(int(x.value))
    return Alerts(new, sent, firing, stops)
