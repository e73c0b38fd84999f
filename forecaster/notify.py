"""Deliver alerts once per change of state: run tags for the state, webhooks (JSON, Slack) for people.

The state of every rule lives on the run itself as a tag a person can read and search,
``forecast.alert.<rule> = ok`` or ``firing: P(final loss beats best run r2 at 2.41) = 3.0% < 5%``,
beside ``forecast.alert_hash.<rule>``, a hash of the rule, state and what the verdict refers to;
a cron-driven sync fires an alert when that hash changes, not on every tick. A run tagged
``forecast.silence`` (``all``/``true``, or a comma list of rules) is not notified. A failed webhook
is logged (URL masked: it is a secret) and its state tag is left unwritten; the sync engine marks
the run (``forecast.alert_retry``) so that the next sync evaluates it again even when its inputs did
not change, and retries. The sync itself goes on. Stopping a run is opt-in
(`NotifySettings.stop_runs`), never the default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from forecaster import redact
from forecaster.alerts import DIVERGENCE, ETA_TO_TARGET, RULES, WILL_NOT_BEAT_BEST, Alert, AlertSettings
from forecaster.errors import InputError
from forecaster.tags import ALERT_HASH_PREFIX, ALERT_PREFIX, ALERTS, SILENCE

log = logging.getLogger(__name__)

STATE_TAG_MAX = 500  # characters; the message is one line, this only bounds a pathological one
# what this module wrote before the states became readable: "<state>:<10 hex digits>"
_LEGACY_STATE = re.compile(r"^([a-z_]+):([0-9a-f]{10})$")
WEBHOOK_KINDS = ("json", "slack")


def mask_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries carry the secret token (safe on a broken URL)."""
    parts = redact.split_uri(str(url))
    if parts is None:
        return "***"
    scheme, authority, _, _ = parts
    host = authority.rsplit("@", 1)[-1] or "?"
    return f"{scheme}://{host}/***"


@dataclass
class Webhook:
    """One webhook endpoint; `kind` "json" posts the alert object, "slack" a Slack message."""

    url: str = field(repr=False)
    kind: str = "json"
    name: str = ""

    def __post_init__(self) -> None:
        # whatever quotes the URL from now on (an HTTP library's error, a log line) shows ***
        redact.register_uri(self.url, path_is_secret=True)
        if self.kind not in WEBHOOK_KINDS:
            raise InputError(f"webhook kind {self.kind!r} unknown; use one of {', '.join(WEBHOOK_KINDS)}")
        if not self.url.lower().startswith(("http://", "https://")):
            raise InputError(f"webhook {self.name or mask_url(self.url)} needs an http(s) URL")
        if any(c.isspace() or ord(c) < 32 for c in self.url):
            raise InputError(f"webhook {self.name or mask_url(self.url)}: the URL holds a space or a control "
                             "character (percent-encode it, e.g. %20)")
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError:
            raise InputError(f"webhook {self.name or mask_url(self.url)}: malformed URL "
                             "(a port must be a number from 1 to 65535)") from None
        if not parts.hostname or port == 0:
            raise InputError(f"webhook {self.name or mask_url(self.url)}: malformed URL (no host or port 0)")

    @property
    def masked(self) -> str:
        return self.name or mask_url(self.url)

    def __repr__(self) -> str:  # never show the URL
        return f"Webhook(kind={self.kind!r}, url={mask_url(self.url)!r})"


@dataclass
class NotifySettings:
    """Where alerts go and how hard to try: webhooks, timeout, retries within one sync."""

    webhooks: list[Webhook] = field(default_factory=list)
    timeout: float = 5.0
    retries: int = 1  # extra attempts within one sync; later syncs retry anyway
    backoff: float = 0.5
    notify_resolved: bool = False  # also post when a firing alert goes back to normal
    stop_runs: bool = False  # opt-in (`--stop-runs`): ask the tracker to stop runs on stop rules
    stop_rules: tuple[str, ...] = (WILL_NOT_BEAT_BEST, DIVERGENCE)


def load_alert_config(table: Mapping[str, Any] | None) -> tuple[AlertSettings, NotifySettings]:
    """Settings from the config file's ``[alerts]`` table (webhooks under ``[[alerts.webhook]]``).

    A webhook gives ``url`` or, better, ``url_env`` naming an environment variable that holds it,
    so the secret need not sit in the file.
    """
    table = dict(table or {})
    from forecaster.config import validate

    validate({"alerts": table})
    hooks = []
    for i, w in enumerate(table.pop("webhook", []) or table.pop("webhooks", []) or []):
        url = w.get("url")
        if not url and w.get("url_env"):
            url = os.environ.get(w["url_env"])
            if not url:
                raise InputError(f"alerts.webhook[{i}]: environment variable {w['url_env']} is not set")
        if not url:
            raise InputError(f"alerts.webhook[{i}] needs url or url_env")
        hooks.append(Webhook(url=url, kind=w.get("kind", "json"), name=w.get("name", "")))
    notify_keys = {"timeout", "retries", "backoff", "notify_resolved", "stop_runs"}
    notify = NotifySettings(webhooks=hooks, **{k: table.pop(k) for k in list(table) if k in notify_keys})
    if "rules" in table:
        table["rules"] = (table["rules"],) if isinstance(table["rules"], str) else tuple(table["rules"])
    try:
        alert = AlertSettings(**table)
    except (TypeError, ValueError) as e:
        raise InputError(f"[alerts] config: {e}") from None
    return alert, notify


# -- de-duplication state (pure) -------------------------------------------------------------
def state_tag(alert: Alert) -> str:
    """The tag value a person reads: ``ok``, else the state and the message behind it."""
    if alert.state == "ok":
        return "ok"
    return f"{alert.state}: {alert.message}"[:STATE_TAG_MAX]


def alert_state(value: str | None) -> str | None:
    """The state word of a state tag's value (``firing``, ``ok``, ...), written now or before."""
    if value is None:
        return None
    return str(value).split(":", 1)[0].strip()


def _last_hash(tags: Mapping[str, str], rule: str) -> str | None:
    """The fingerprint recorded for `rule`: its hash tag, or the tail of a value written before."""
    if ALERT_HASH_PREFIX + rule in tags:
        return str(tags[ALERT_HASH_PREFIX + rule])
    m = _LEGACY_STATE.match(str(tags.get(ALERT_PREFIX + rule, "")))
    return m.group(2) if m else None


def _rule_of(tag: str) -> str | None:
    for prefix in (ALERT_PREFIX, ALERT_HASH_PREFIX):
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return None


def silenced(tags: Mapping[str, str], rule: str) -> bool:
    """True when the run's ``forecast.silence`` tag covers `rule`."""
    raw = str(tags.get(SILENCE, "")).strip().lower()
    if not raw or raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "all", "*"):
        return True
    return rule.lower() in {r.strip() for r in raw.split(",")}


@dataclass
class Plan:
    """What a sync should do for one run: alerts to post and state tags to write once posted."""

    to_send: list[Alert]
    tags: dict[str, str]  # tag -> value, written only after the matching alert was delivered


def plan_notifications(alerts: list[Alert], tags: Mapping[str, str], notify_resolved: bool = False) -> Plan:
    """Compare each alert's state with the state persisted on the run; send on change only."""
    send, new_tags = [], {}
    for a in alerts:
        key = ALERT_PREFIX + a.rule
        new, old = state_tag(a), tags.get(key)
        if new != old:  # the same state in other words (a new probability) is only rewritten
            new_tags[key] = new
        if _last_hash(tags, a.rule) == a.fingerprint:
            if ALERT_HASH_PREFIX + a.rule not in tags:  # a value written before: move its hash over
                new_tags[ALERT_HASH_PREFIX + a.rule] = a.fingerprint
            continue
        new_tags[ALERT_HASH_PREFIX + a.rule] = a.fingerprint
        was_firing = old is not None and alert_state(old) != "ok"
        wanted = a.firing or (notify_resolved and was_firing and a.rule != ETA_TO_TARGET)
        if wanted and not silenced(tags, a.rule):
            send.append(a)
    return Plan(send, new_tags)


def summary(alerts: list[Alert]) -> str:
    """One line for the run's summary tag: the firing alerts' messages, or "ok"."""
    firing = [f"{a.rule}: {a.message}" for a in alerts if a.firing]
    return "; ".join(firing)[:4000] if firing else "ok"


# -- delivery --------------------------------------------------------------------------------
def payload(alert: Alert, hook: Webhook, run_label: str = "") -> dict:
    """The JSON body for one webhook: the alert object, or a Slack ``text`` message."""
    where = run_label or (f"{alert.group}/{alert.run}" if alert.group else alert.run)
    if hook.kind == "slack":
        icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(alert.severity, ":information_source:")
        return {"text": f"{icon} *{alert.rule}* on `{where}`: {alert.message}"}
    return {"source": "forecaster", "run_label": where, **alert.to_dict()}


def _post(url: str, body: dict, timeout: float) -> None:
    req = urllib.request.Request(url, data=json.dumps(body, default=float).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http(s) checked)
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, "unexpected status", resp.headers, None)


def _scrub(err: BaseException, url: str) -> str:
    """An error's text with the URL (its path and query hold the token) masked."""
    text = f"{type(err).__name__}: {err}"
    parts = redact.split_uri(url)
    text = text.replace(url, mask_url(url))
    if parts is not None:
        for secret in sorted({parts[2] + parts[3], parts[3], parts[2]}, key=len, reverse=True):
            if len(secret) > 1:
                text = text.replace(secret, "/***" if secret.startswith("/") else "***")
    return redact.redact(text)


@dataclass
class Delivery:
    """Outcome of posting one alert to every webhook."""

    alert: Alert
    ok: bool
    errors: list[str] = field(default_factory=list)  # masked


def deliver(alerts: list[tuple[Alert, str]], settings: NotifySettings,
            post: Callable[[str, dict, float], None] = _post) -> list[Delivery]:
    """Post every (alert, run label) to every webhook concurrently; failures are logged, not raised."""
    jobs = [(i, a, label, h) for i, (a, label) in enumerate(alerts) for h in settings.webhooks]

    def one(job):
        _, a, label, h = job
        err = None
        for attempt in range(settings.retries + 1):
            try:
                post(h.url, payload(a, h, label), settings.timeout)
                return None
            except Exception as e:  # noqa: BLE001 - any failure: log, retry next sync
                err = _scrub(e, h.url)
                if attempt < settings.retries:
                    time.sleep(settings.backoff * (2**attempt))
        log.warning("webhook %s failed for %s on %s (will retry next sync): %s",
                    h.masked, a.rule, label or a.run, err)
        return f"{h.masked}: {err}"

    results: list[Delivery] = [Delivery(a, True) for a, _ in alerts]
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        for (i, *_), err in zip(jobs, pool.map(one, jobs)):
            if err is not None:
                results[i].ok = False
                results[i].errors.append(err)
    return results


@dataclass
class Outcome:
    """What a sync writes back to one run after delivery: tags, and what was sent or failed."""

    tags: dict[str, str]
    sent: list[Alert]
    failed: list[Delivery]
    stop: bool = False  # only ever True with `stop_runs` opted in


def process_alerts(alerts_by_run: Mapping[str, list[Alert]], tags_by_run: Mapping[str, Mapping[str, str]],
                   settings: NotifySettings | None = None,
                   post: Callable[[str, dict, float], None] = _post) -> dict[str, Outcome]:
    """The delivery API for the sync engine: plan per run, post all at once, return tags to write.

    Keys are the caller's run ids (any label). A state tag is returned only when its alert was
    delivered to every webhook (or needed no delivery), so a failure is retried on the next sync.
    The summary tag ``forecast.alerts`` is always returned.
    """
    settings = settings or NotifySettings()
    plans = {rid: plan_notifications(al, tags_by_run.get(rid, {}), settings.notify_resolved)
             for rid, al in alerts_by_run.items()}
    queue = [(a, rid) for rid, p in plans.items() for a in p.to_send]
    results = deliver(queue, settings, post)
    failed_by_run: dict[str, list[Delivery]] = {}
    for (a, rid), d in zip(queue, results):
        if not d.ok:
            failed_by_run.setdefault(rid, []).append(d)
    out = {}
    for rid, p in plans.items():
        failed = failed_by_run.get(rid, [])
        bad_rules = {d.alert.rule for d in failed}
        tags = {k: v for k, v in p.tags.items() if _rule_of(k) not in bad_rules}
        tags[ALERTS] = summary(list(alerts_by_run[rid]))
        stop = settings.stop_runs and not silenced(tags_by_run.get(rid, {}), "stop") and any(
            a.firing and a.rule in settings.stop_rules for a in alerts_by_run[rid])
        out[rid] = Outcome(tags, [a for a in p.to_send if a.rule not in bad_rules], failed, stop)
    return out


__all__ = ["RULES", "Webhook", "NotifySettings",
           "load_alert_config", "mask_url", "state_tag", "alert_state", "silenced", "plan_notifications", "deliver",
           "process_alerts", "Outcome", "Delivery", "Plan", "payload", "summary"]
