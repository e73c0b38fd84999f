"""What `forecast sync` guards against (issue 13, items 2, 4, 5, 6), against a real `mlflow server`.

- one lock per target however it is spelled (URI or URI/, flag or environment, name or id);
- no credential ever printed: every failure path driven as a process, stdout, stderr and the log
  file searched for the planted secrets;
- the config file checked by a schema: one line naming the key, exit 2;
- a failed webhook retried at the next sync, a deleted run's forecast removed, a deleted
  experiment, an empty name, a bad filter or a missing SQLite store refused with exit 2.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, log_hf_run  # noqa: E402

import forecaster.sync as sync_mod  # noqa: E402
from forecaster import redact  # noqa: E402
from forecaster.cli import main  # noqa: E402
from forecaster.errors import InputError  # noqa: E402
from forecaster.trackers import canonical_uri  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAW = "multipower"
PASSWORD = "S3cretPW-9f2c"
TOKEN = "T0ken-55e1aa"
HOOK_TOKEN = "HOOKSECRET-7d3b"
ENV_PASSWORD = "envpw-0c4d-DO-NOT-PRINT"
PLANTED = (PASSWORD, TOKEN, HOOK_TOKEN, ENV_PASSWORD)


def _sync(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["sync", *args], env=env)


def _one_line(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def _forecasts(client: MlflowClient, exp: str, rid: str) -> list:
    return client.search_runs([exp], f"tags.`forecast.source_run` = '{rid}'", run_view_type=ViewType.ACTIVE_ONLY)


# -- item 2: identity ----------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000/"),
    ("http://127.0.0.1:5000", "HTTP://bob:pw@127.0.0.1:5000//"),
    ("http://MLflow.Example.com", "http://mlflow.example.com:80/"),
    ("https://mlflow.example.com/base/", "https://mlflow.example.com:443/base?token=x"),
    ("sqlite:///m.db", f"sqlite:///{os.getcwd()}/./m.db"),
    ("./mlruns", "file:mlruns/"),
    ("http://[::1]:5000", "http://[::1]:5000/"),
])
def test_every_spelling_of_an_address_has_one_canonical_form(a, b) -> None:
    assert canonical_uri(a) == canonical_uri(b)
    assert "pw" not in canonical_uri(b) and "token" not in canonical_uri(b)


def test_different_targets_keep_different_forms() -> None:
    forms = {canonical_uri(u) for u in ("http://h:5000", "http://h:5001", "https://h:5000", "http://h:5000/a",
                                        "http://g:5000", "sqlite:///a.db", "sqlite:///b.db")}
    assert len(forms) == 7


def test_two_syncs_spelled_differently_share_one_lock(mlflow_server, tmp_path, monkeypatch) -> None:
    """While a sync of the experiment runs, every other spelling of it is refused (exit 75)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("guard-lock")
    rid = log_hf_run(client, exp, "live", upto=400, seed=3, status="RUNNING")
    other = client.create_experiment("guard-lock-other")
    host = mlflow_server.uri.split("//", 1)[1]
    spellings = {
        "URI/ and the id": (["--tracking-uri", mlflow_server.uri + "/", "-e", exp], None),
        "credentials, case, the name twice": (["--tracking-uri", f"HTTP://bob:{PASSWORD}@{host}//", "-e",
                                               "guard-lock", "-e", "guard-lock"], None),
        "the environment": (["-e", "guard-lock"], {"MLFLOW_TRACKING_URI": mlflow_server.uri + "/"}),
        "with another experiment": (["--tracking-uri", mlflow_server.uri, "-e", other, "-e", exp], None),
    }
    during: dict[str, object] = {}
    real = sync_mod.sync

    def first_sync_running(tracker, settings, **kw):
        if not during:  # the first sync holds its lock here; the others must stop before syncing
            for name, (args, env) in spellings.items():
                during[name] = _sync(*args, "--law", LAW, "--lock-wait", "0", env=env)
        return real(tracker, settings, **kw)

    monkeypatch.setattr(sync_mod, "sync", first_sync_running)
    res = _sync("--tracking-uri", mlflow_server.uri, "-e", "guard-lock", "--law", LAW, "--no-plots")
    assert res.exit_code == 0 and "1 forecast" in res.output, res.output
    for name, got in during.items():
        assert got.exit_code == 75, (name, got.output)
        assert "another forecast sync holds" in got.output and PASSWORD not in got.output, name
    assert len(_forecasts(client, exp, rid)) == 1
    # an experiment of its own is not held up by it
    monkeypatch.setattr(sync_mod, "sync", real)
    log_hf_run(client, other, "solo", upto=400, seed=4, status="RUNNING")
    held = sync_mod.default_lock_path(f"mlflow|{canonical_uri(mlflow_server.uri)}|experiment:{exp}")
    with sync_mod.exclusive_lock(held):
        res = _sync("--tracking-uri", mlflow_server.uri, "-e", "guard-lock-other", "--law", LAW, "--no-plots")
        assert res.exit_code == 0 and "1 forecast" in res.output, res.output
        res = _sync("--tracking-uri", mlflow_server.uri + "/", "-e", exp, "--law", LAW)
        assert res.exit_code == 75


# -- item 4: secrets -----------------------------------------------------------------------------
def test_masking_handles_what_urlsplit_rejects() -> None:
    for uri in (f"http://bob:{PASSWORD}@ho st:5000", f"http://bob:{PASSWORD}@h:99999/?token={TOKEN}",
                f"http://bob:{PASSWORD}@h:5000:6000", f"http://bob:pa/{PASSWORD}@h/x?a={TOKEN}#{TOKEN}"):
        masked = redact.mask_uri(uri)
        assert PASSWORD not in masked and TOKEN not in masked and "***@" in masked
    assert redact.mask_uri("http://h:5000/x") == "http://h:5000/x"
    text = f"failed: http://u:{PASSWORD}@h/x?token={TOKEN} and sqlite:///a.db"
    assert redact.redact(text) == "failed: http://***@h/x?*** and sqlite:///a.db"


@pytest.mark.parametrize("uri, words", [
    (f"http://bob:{PASSWORD}@ho st:5000", "host name"),
    (f"http://bob:{PASSWORD}@127.0.0.1:99999", "port"),
    (f"http://bob:{PASSWORD}@127.0.0.1:5000:6000", "port"),
    (f"http://bob:{PASSWORD}@:5000", "no host"),
])
def test_malformed_uri_is_one_masked_line_exit_2(uri, words, tmp_path) -> None:
    line = _one_line(_sync("--tracking-uri", uri, "-e", "x", "--lock-file", str(tmp_path / "l")))
    assert line.startswith("error: tracking URI http://***@") and words in line and PASSWORD not in line


class _Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: answers 500 to the first `fail` posts, 200 after."""

    posts: list = []
    fail = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).posts.append((self.path, body))
        ok = len(type(self).posts) > type(self).fail
        self.send_response(200 if ok else 500)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def hook():
    handler = type("Hook", (_Hook,), {"posts": [], "fail": 0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_no_failure_path_prints_a_planted_credential(mlflow_server, tmp_path) -> None:
    """Credentials in the URI, its query, a webhook URL and the environment; every path as a process."""
    from conftest import free_port

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("guard-secrets")
    log_hf_run(client, exp, "live", upto=400, seed=5, status="RUNNING")
    host = mlflow_server.uri.split("//", 1)[1]
    creds = f"http://bob:{PASSWORD}@{host}/"  # (MLflow appends its routes: a query would break the address)
    dead = f"http://bob:{PASSWORD}@127.0.0.1:{free_port()}/?token={TOKEN}"
    hook = f"http://127.0.0.1:{free_port()}/services/{HOOK_TOKEN}?token={HOOK_TOKEN}"

    def config(name: str, body: str) -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(body)
        return str(path)

    alerts = f'[alerts]\ntarget = 0.0001\nretries = 0\ntimeout = 1\n[[alerts.webhook]]\nurl = "{hook}"\n'
    cases = {
        "host with a space": (["--tracking-uri", f"http://bob:{PASSWORD}@ho st:5000", "-e", "x"], 2),
        "port 99999": (["--tracking-uri", f"http://bob:{PASSWORD}@127.0.0.1:99999", "-e", "x"], 2),
        "port 5000:6000": (["--tracking-uri", f"http://bob:{PASSWORD}@127.0.0.1:5000:6000", "-e", "x"], 2),
        "unreachable": (["--tracking-uri", dead, "-e", "x"], 1),
        "unknown experiment": (["--tracking-uri", creds, "-e", "nope"], 2),
        "bad filter": (["--tracking-uri", creds, "-e", "guard-secrets", "--filter", "params.x ==== 'a'"], 2),
        "webhook with a space": (["--tracking-uri", creds, "-e", "guard-secrets", "--config",
                                  config("space", f'[[alerts.webhook]]\nurl = "{hook} x"\n')], 2),
        "webhook port": (["--tracking-uri", creds, "-e", "guard-secrets", "--config",
                          config("port", f'[[alerts.webhook]]\nurl = "http://h:99999/{HOOK_TOKEN}"\n')], 2),
        "config type": (["--config", config("type", f'[sync]\ntracking_uri = "{creds}"\nlock_wait = "abc"\n')], 2),
        "environment URI": (["-e", "x"], 2),
        # runs, fits, fails to deliver the alert (nothing listens): exit 0, the failure logged
        "failed webhook": (["--tracking-uri", creds, "-e", "guard-secrets", "--no-plots", "--config",
                            config("alerts", f'[sync]\nlaw = "{LAW}"\n' + alerts)], 0),
    }
    env = {**os.environ, "FORECASTER_DEVICE": "cpu", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": ENV_PASSWORD,
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(item):
        name, (args, _) = item
        log = tmp_path / f"{name.replace(' ', '_')}.log"
        e = dict(env)
        if name == "environment URI":
            e["MLFLOW_TRACKING_URI"] = f"http://bob:{PASSWORD}@127.0.0.1:5000:6000/?token={TOKEN}"
        # with a log file errors go to both it and stderr; the summary's own path (stdout) once
        for flags in ([], ["--log-file", str(log)]) if name == "failed webhook" else (["--log-file", str(log)],):
            proc = subprocess.run([sys.executable, "-m", "forecaster.cli", "sync", *args, *flags],
                                  capture_output=True, text=True, timeout=300, cwd=REPO, env=e)
            yield proc
        yield log

    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(cases, pool.map(lambda item: list(run(item)), cases.items())))
    for name, (*procs, log) in results.items():
        code = cases[name][1]
        text = "".join(p.stdout + p.stderr for p in procs) + log.read_text()
        for secret in PLANTED:
            assert secret not in text, (name, secret, text[-3000:])
        assert all(p.returncode == code for p in procs), (name, text[-2000:])
        assert "Traceback" not in text, (name, text[-3000:])
        if code:
            assert len(procs[-1].stderr.strip().splitlines()) == 1, (name, procs[-1].stderr)
    assert "webhook http://127.0.0.1:" in results["failed webhook"][-1].read_text()  # it was logged, masked
    assert f"forecasts beside the real curves: {mlflow_server.uri}/#" in results["failed webhook"][0].stdout


def test_an_unexpected_failure_is_one_redacted_line(mlflow_server, tmp_path, monkeypatch) -> None:
    """A bug of ours quoting a URI: one line on stderr, the traceback (redacted) in the log file only."""
    MlflowClient(mlflow_server.uri).create_experiment("guard-bug")

    def broken(tracker, settings, **kw):
        raise RuntimeError(f"boom talking to {tracker.uri}?token={TOKEN}")

    monkeypatch.setattr(sync_mod, "sync", broken)
    host = mlflow_server.uri.split("//", 1)[1]
    log = tmp_path / "sync.log"
    res = _sync("--tracking-uri", f"http://bob:{PASSWORD}@{host}", "-e", "guard-bug", "--log-file", str(log),
                "--lock-file", str(tmp_path / "l"))
    line = _one_line(res, 1)
    assert line.startswith("error: unexpected RuntimeError: boom talking to http://***@")
    logged = log.read_text()
    assert "Traceback" in logged and "RuntimeError" in logged
    assert PASSWORD not in res.output + logged and TOKEN not in res.output + logged


# -- item 5: the config file's schema ------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ('[sync]\nlock_wait = "abc"\n', '[sync] lock_wait must be a number, got "abc"'),
    ('[sync]\nforce = "false"\n', '[sync] force must be true or false'),
    ('[sync]\ninclude_ended = "no"\n', '[sync] include_ended must be true or false'),
    ("[sync]\nexperiments = 5\n", "[sync] experiments must be a non-empty string or a list of them, got 5"),
    ("[sync]\nmetrics = 3\n", "[sync] metrics must be"),
    ("[sync]\ntracking_uri = 5\n", "[sync] tracking_uri must be a non-empty string, got 5"),
    ("[sync]\nlock_wait = -1\n", "[sync] lock_wait must be at least 0, got -1"),
    ("[sync]\nlock_wait = true\n", "[sync] lock_wait must be a number, got true"),
    ("[sync]\nworkers = 0\n", "[sync] workers must be at least 1"),
    ('[sync]\nexperiments = ["a", ""]\n', "[sync] experiments must be"),
    ('[tracker]\nworkers = "many"\n', '[tracker] workers must be a whole number, got "many"'),
    ("[[alerts.webhook]]\nurl = 123\n", "url must be a non-empty string, got 123"),
    ('[alerts]\ntimeout = "x"\n', '[alerts] timeout must be a number, got "x"'),
    ("[alerts]\nbeat_threshold = 5\n", "[alerts] beat_threshold must be at most 1, got 5"),
    ('[alerts]\nnotify_resolved = "yes"\n', "[alerts] notify_resolved must be true or false"),
    ('[scaling]\nenabled = "false"\n', "[scaling] enabled must be true or false"),
    ('[config.rename]\nmy_steps = 5\n', "[config.rename] my_steps must be a non-empty string, got 5"),
    ('[sync]\nlaw = "bogus"\n', "law 'bogus' unknown"),
])
def test_config_values_of_the_wrong_type_are_one_line_naming_the_key(body, words, tmp_path) -> None:
    cfg = tmp_path / "sync.toml"
    cfg.write_text(body)
    line = _one_line(_sync("--config", str(cfg), "-e", "x", "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
                           "--lock-file", str(tmp_path / "l")))
    assert line.startswith("error: config file") and words in line
    assert not (tmp_path / "m.db").exists()


def test_booleans_and_numbers_of_the_right_type_pass(tmp_path) -> None:
    from forecaster import config

    cfg = tmp_path / "sync.toml"
    cfg.write_text('[sync]\nforce = false\ninclude_ended = true\nlock_wait = 2.5\nexperiments = "a"\n'
                   'workers = 3\n[alerts]\ntarget = 2\nrules = "divergence"\n[tracker]\nworkers = 4\n')
    data = config.load(cfg)
    assert data["sync"]["force"] is False and data["sync"]["lock_wait"] == 2.5
    from forecaster.notify import load_alert_config

    alert, _ = load_alert_config(data["alerts"])
    assert alert.rules == ("divergence",) and alert.target == 2


@pytest.mark.parametrize("args, words", [
    (["--law", "bogus"], "'bogus' is not one of"),
    (["--device", "tpu"], "'tpu' is not one of"),
    (["--lock-wait", "-1"], "--lock-wait"),
    (["--lock-wait", "abc"], "--lock-wait"),
])
def test_command_line_values_are_checked_by_click(args, words) -> None:
    line = _one_line(_sync("-e", "x", *args))
    assert line.startswith("error: ") and words in line


# -- item 6: the smaller ones --------------------------------------------------------------------
def test_a_failed_webhook_is_retried_at_the_next_sync_without_new_data(mlflow_server, tmp_path, hook) -> None:
    handler, base = hook
    handler.fail = 1  # the first delivery fails
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("guard-webhook")
    rid = log_hf_run(client, exp, "live", upto=400, seed=6, status="RUNNING")
    cfg = tmp_path / "sync.toml"
    cfg.write_text(f'[sync]\nlaw = "{LAW}"\nplots = false\n[alerts]\ntarget = 0.0001\nretries = 0\n'
                   f'rules = ["target_unreachable"]\n[[alerts.webhook]]\nurl = "{base}/hook/{HOOK_TOKEN}"\n')
    args = ["--tracking-uri", mlflow_server.uri, "-e", "guard-webhook", "--config", str(cfg),
            "--lock-file", str(tmp_path / "l")]
    first = _sync(*args)
    assert first.exit_code == 0 and len(handler.posts) == 1, first.output
    assert HOOK_TOKEN not in first.output and "will retry next sync" in first.output
    tags = client.get_run(rid).data.tags
    assert "forecast.alert_retry" in tags and "forecast.alert.target_unreachable" not in tags
    second = _sync(*args)  # the run logged nothing new
    assert second.exit_code == 0 and len(handler.posts) == 2, second.output
    assert handler.posts[1][1]["rule"] == "target_unreachable"
    tags = client.get_run(rid).data.tags
    assert "forecast.alert_retry" not in tags and tags["forecast.alert.target_unreachable"].startswith("firing")
    assert len(_forecasts(client, exp, rid)) == 1
    third = _sync(*args)
    assert third.exit_code == 0 and "1 unchanged" in third.output and len(handler.posts) == 2


def test_a_run_deleted_between_syncs_loses_its_forecast(mlflow_server, tmp_path) -> None:
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("guard-deleted-run")
    keep = log_hf_run(client, exp, "keep", upto=400, seed=7, status="RUNNING")
    gone = log_hf_run(client, exp, "gone", upto=400, seed=8, status="RUNNING")
    args = ["--tracking-uri", mlflow_server.uri, "-e", "guard-deleted-run", "--law", LAW, "--no-plots",
            "--lock-file", str(tmp_path / "l")]
    assert _sync(*args).exit_code == 0
    (kept,) = _forecasts(client, exp, keep)
    (orphan,) = _forecasts(client, exp, gone)
    client.delete_run(gone)
    # a filter that hides the kept run must not make its forecast look orphaned
    res = _sync(*args, "--filter", "attributes.run_name = 'gone'")
    assert res.exit_code == 0, res.output
    assert client.get_run(kept.info.run_id).info.lifecycle_stage == "active"
    assert client.get_run(orphan.info.run_id).info.lifecycle_stage == "deleted"
    add_points(client, keep, 420, 440, seed=7)
    res = _sync(*args)
    assert res.exit_code == 0 and len(_forecasts(client, exp, keep)) == 1


def test_deleted_experiment_by_name_or_id_is_exit_2(mlflow_server, tmp_path) -> None:
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("guard-deleted-exp")
    client.delete_experiment(exp)
    for ref in ("guard-deleted-exp", exp):
        line = _one_line(_sync("--tracking-uri", mlflow_server.uri, "-e", ref, "--lock-file", str(tmp_path / "l")))
        assert "is deleted" in line and f"id {exp}" in line


def test_empty_experiment_and_bad_filter_are_exit_2(mlflow_server, tmp_path) -> None:
    client = MlflowClient(mlflow_server.uri)
    client.create_experiment("guard-filter")
    base = ["--tracking-uri", mlflow_server.uri, "--lock-file", str(tmp_path / "l")]
    assert "experiment name is empty" in _one_line(_sync(*base, "-e", ""))
    assert "experiment name is empty" in _one_line(_sync(*base, "-e", "  "))
    line = _one_line(_sync(*base, "-e", "guard-filter", "--filter", "params.model ==== 'gpt'"))
    assert line.startswith("error: --filter \"params.model ==== 'gpt'\" is not a valid MLflow run filter")


def test_a_missing_sqlite_store_is_not_created(tmp_path) -> None:
    for uri in (f"sqlite:///{tmp_path}/typo.db", f"sqlite:///{tmp_path}/no/such/dir/m.db", f"{tmp_path}/mlrunz"):
        line = _one_line(_sync("--tracking-uri", uri, "-e", "x", "--lock-file", str(tmp_path / "l")))
        assert "no store at" in line and "does not create one" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]
    with pytest.raises(InputError, match="no store at"):
        from forecaster_mlflow import MlflowTracker

        MlflowTracker(uri=f"sqlite:///{tmp_path}/typo.db", experiments=["x"])
