"""Alert delivery: state tags de-duplicate across syncs, webhooks reach a loopback server, failures retry."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from forecaster.alerts import Alert
from forecaster.errors import InputError
from forecaster.notify import (
    NotifySettings, Webhook, alert_state, load_alert_config, mask_url, plan_notifications, process_alerts,
)
from forecaster.tags import ALERT_HASH_PREFIX, ALERT_PREFIX, ALERTS, SILENCE


def _alert(rule="will_not_beat_best", firing=True, state=None, value=0.01, identity="best:2.0", run="r1"):
    return Alert(rule, run, "g", firing, state or ("firing" if firing else "ok"), value,
                 f"P(beats best) = {value:.1%}", identity=identity)


class _Hook:
    """A loopback HTTP server recording JSON posts; answers `status` (settable)."""

    def __init__(self, status: int = 200):
        self.bodies: list[tuple[str, dict]] = []
        self.status = status
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                outer.bodies.append((self.path, json.loads(self.rfile.read(n))))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/SECRET-TOKEN-123"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = _Hook()
    yield h
    h.close()


def _sync(alerts, tags, settings):
    """One cron tick: evaluate -> deliver -> write the returned tags onto the run."""
    out = process_alerts({"r1": alerts}, {"r1": tags}, settings)["r1"]
    tags.update(out.tags)
    return out


def test_fires_once_per_change_of_state(hook):
    settings = NotifySettings(webhooks=[Webhook(hook.url, "json")], timeout=2)
    tags: dict[str, str] = {}
    first = _sync([_alert()], tags, settings)
    assert [a.rule for a in first.sent] == ["will_not_beat_best"] and len(hook.bodies) == 1
    assert tags[ALERT_PREFIX + "will_not_beat_best"].startswith("firing:")
    assert "will_not_beat_best" in tags[ALERTS]
    # the same state on the next ticks (even with a slightly different probability): nothing sent
    for v in (0.012, 0.03):
        again = _sync([_alert(value=v)], tags, settings)
        assert again.sent == [] and len(hook.bodies) == 1
    # back to normal: the state tag changes, nothing posted unless asked for
    ok = _sync([_alert(firing=False, value=0.4)], tags, settings)
    assert ok.sent == [] and tags[ALERT_PREFIX + "will_not_beat_best"] == "ok"
    assert tags[ALERTS] == "ok"
    # firing again after a change of state: posted again
    _sync([_alert(value=0.02)], tags, settings)
    assert len(hook.bodies) == 2
    # a new best run in the group re-arms it (identity changes the hash)
    _sync([_alert(value=0.02, identity="other:1.9")], tags, settings)
    assert len(hook.bodies) == 3
    path, body = hook.bodies[0]
    assert path == "/hooks/SECRET-TOKEN-123"
    assert body["rule"] == "will_not_beat_best" and body["value"] == pytest.approx(0.01) and body["run"] == "r1"


def test_slack_payload_and_resolved_notice(hook):
    settings = NotifySettings(webhooks=[Webhook(hook.url, "slack")], notify_resolved=True, timeout=2)
    tags: dict[str, str] = {}
    _sync([_alert(rule="divergence", state="spike", value=2.1)], tags, settings)
    _sync([_alert(rule="divergence", firing=False, value=1.0)], tags, settings)
    assert len(hook.bodies) == 2
    assert set(hook.bodies[0][1]) == {"text"} and "divergence" in hook.bodies[0][1]["text"]


def test_silence_tag_suppresses_posts_but_keeps_state(hook):
    settings = NotifySettings(webhooks=[Webhook(hook.url)], timeout=2)
    tags = {SILENCE: "will_not_beat_best"}
    _sync([_alert(), _alert(rule="divergence", state="nonfinite", value=5.0)], tags, settings)
    assert [b["rule"] for _, b in hook.bodies] == ["divergence"]
    tags[SILENCE] = "all"
    _sync([_alert(identity="new:1.0")], tags, settings)
    assert len(hook.bodies) == 1
    # the silenced state was still recorded, so lifting the silence does not replay it
    del tags[SILENCE]
    _sync([_alert(identity="new:1.0")], tags, settings)
    assert len(hook.bodies) == 1


def test_webhook_failure_is_logged_masked_and_retried_next_sync(caplog):
    bad = _Hook(status=500)
    try:
        settings = NotifySettings(webhooks=[Webhook(bad.url)], retries=1, backoff=0.01, timeout=2)
        tags: dict[str, str] = {}
        with caplog.at_level(logging.WARNING, logger="forecaster.notify"):
            out = _sync([_alert()], tags, settings)
        assert out.sent == [] and len(out.failed) == 1 and len(bad.bodies) == 2  # one retry
        assert ALERT_PREFIX + "will_not_beat_best" not in tags  # not recorded: retried later
        assert ALERTS in tags  # the sync still writes what it can
        assert "SECRET-TOKEN" not in caplog.text and "SECRET-TOKEN" not in str(out.failed[0].errors)
        assert "webhook" in caplog.text and "127.0.0.1" in caplog.text
        bad.status = 200
        out = _sync([_alert()], tags, settings)
        assert [a.rule for a in out.sent] == ["will_not_beat_best"]
        assert tags[ALERT_PREFIX + "will_not_beat_best"].startswith("firing:")
        assert _sync([_alert()], tags, settings).sent == []
    finally:
        bad.close()


def test_unreachable_webhook_does_not_raise(caplog):
    # a port nobody listens on: connection refused, bounded by the timeout
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    settings = NotifySettings(webhooks=[Webhook(f"http://127.0.0.1:{port}/x/TOKEN")], retries=0, timeout=1)
    out = process_alerts({"r": [_alert(run="r")]}, {"r": {}}, settings)["r"]
    assert out.failed and not out.sent and "TOKEN" not in caplog.text


def test_plan_is_pure_and_stop_is_opt_in():
    plan = plan_notifications([_alert()], {})
    assert len(plan.to_send) == 1
    assert sorted(plan.tags) == [ALERT_PREFIX + "will_not_beat_best", ALERT_HASH_PREFIX + "will_not_beat_best"]
    default = process_alerts({"r": [_alert(run="r")]}, {"r": {}}, NotifySettings())["r"]
    assert default.stop is False
    opted = process_alerts({"r": [_alert(run="r")]}, {"r": {}}, NotifySettings(stop_runs=True))["r"]
    assert opted.stop is True


def test_config_and_masking(monkeypatch):
    monkeypatch.setenv("MY_HOOK", "https://hooks.slack.com/services/T000/B000/XXXX")
    alert, notify = load_alert_config({
        "beat_threshold": 0.1, "target": 2.5, "timeout": 3,
        "webhook": [{"url_env": "MY_HOOK", "kind": "slack"}, {"url": "http://127.0.0.1:9/h"}],
    })
    assert alert.beat_threshold == 0.1 and alert.target == 2.5 and notify.timeout == 3
    assert [w.kind for w in notify.webhooks] == ["slack", "json"] and notify.stop_runs is False
    assert "XXXX" not in repr(notify) and mask_url(notify.webhooks[0].url) == "https://hooks.slack.com/***"
    with pytest.raises(InputError):
        load_alert_config({"webhook": [{"url_env": "NOT_SET_ANYWHERE_X"}]})
    with pytest.raises(InputError):
        load_alert_config({"webhook": [{"url": "ftp://x"}]})
    with pytest.raises(InputError):
        load_alert_config({"no_such_setting": 1})


def test_state_tags_read_as_a_person_writes_them_and_keep_matching_firing_searches():
    tags: dict[str, str] = {}
    _sync([_alert(value=0.03)], tags, NotifySettings())
    value = tags[ALERT_PREFIX + "will_not_beat_best"]
    assert value == "firing: P(beats best) = 3.0%"
    assert value.startswith("firing")  # what tags."forecast.alert.will_not_beat_best" LIKE 'firing%' finds
    assert tags[ALERT_HASH_PREFIX + "will_not_beat_best"] == _alert(value=0.03).fingerprint
    _sync([_alert(firing=False, value=0.4)], tags, NotifySettings())
    assert tags[ALERT_PREFIX + "will_not_beat_best"] == "ok" and alert_state("ok") == "ok"
    assert alert_state("spike: loss has stayed 1.50x above its best") == "spike"


def test_a_new_probability_in_the_same_state_rewrites_the_text_without_a_post(hook):
    settings = NotifySettings(webhooks=[Webhook(hook.url)], timeout=2)
    tags: dict[str, str] = {}
    _sync([_alert(value=0.01)], tags, settings)
    out = _sync([_alert(value=0.02)], tags, settings)
    assert out.sent == [] and len(hook.bodies) == 1
    assert tags[ALERT_PREFIX + "will_not_beat_best"] == "firing: P(beats best) = 2.0%"


def test_states_written_before_as_state_and_hash_are_not_posted_again(hook):
    settings = NotifySettings(webhooks=[Webhook(hook.url)], timeout=2, notify_resolved=True)
    a = _alert()
    tags = {ALERT_PREFIX + a.rule: f"firing:{a.fingerprint}"}  # the old "<state>:<hash>" value
    out = _sync([a], tags, settings)
    assert out.sent == [] and hook.bodies == []
    assert tags[ALERT_PREFIX + a.rule] == "firing: P(beats best) = 1.0%"
    assert tags[ALERT_HASH_PREFIX + a.rule] == a.fingerprint
    # an old firing value still counts as firing: going back to ok is a resolved notice
    tags = {ALERT_PREFIX + a.rule: f"firing:{a.fingerprint}"}
    resolved = _sync([_alert(firing=False, value=0.4)], tags, settings)
    assert [x.rule for x in resolved.sent] == [a.rule]


def test_a_failed_post_leaves_both_state_tags_unwritten():
    bad = _Hook(status=500)
    try:
        settings = NotifySettings(webhooks=[Webhook(bad.url)], retries=0, timeout=2)
        tags: dict[str, str] = {}
        _sync([_alert()], tags, settings)
        assert not [k for k in tags if k.startswith((ALERT_PREFIX, ALERT_HASH_PREFIX))]
    finally:
        bad.close()
