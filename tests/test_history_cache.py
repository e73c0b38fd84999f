"""The history cache (forecaster.cache) and the tail reads behind it, against a real `mlflow server`.

What each sync asks the tracker for is recorded by a subclass of the real adapter that passes every
call through; the histories a cached sync ends up with are compared with a fresh full read.
"""

from __future__ import annotations

import http.server
import logging
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, log_hf_run, recording_mlflow  # noqa: E402

from forecaster import cache as hc  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402

KEYS = ["loss", "learning_rate"]
LAW = "multipower"


_Recording = recording_mlflow()


def _read(uri, exp_name, cache, sample=None):
    """Every run's histories through the cache (None: no cache), and what the tracker was asked."""
    t = _Recording(uri=uri, experiments=[exp_name])
    with t:
        runs = t.list_runs()
        got = {r.id: h for r, h in hc.read_histories(t, runs, KEYS, cache, sample)}
    return got, t.asked


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for rid in a:
        assert set(a[rid]) == set(b[rid]), rid
        for k in a[rid]:
            assert np.array_equal(a[rid][k].steps, b[rid][k].steps), (rid, k)
            assert np.allclose(a[rid][k].values, b[rid][k].values, equal_nan=True), (rid, k)


@pytest.fixture
def experiment(mlflow_server):
    client = MlflowClient(mlflow_server.uri)
    name = f"cache-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name)
    ids = [log_hf_run(client, exp, f"r{i}", upto=400, seed=i, status="RUNNING") for i in range(3)]
    return client, name, ids


def _cache(tmp_path, sample=None) -> hc.HistoryCache:
    return hc.HistoryCache(tmp_path / "history.sqlite", "test", sample)


def test_miss_then_hit_then_only_the_new_steps(mlflow_server, experiment, tmp_path) -> None:
    client, name, ids = experiment
    first, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert asked == [{rid: {"loss": None, "learning_rate": None} for rid in ids}]  # all misses
    _same(first, _read(mlflow_server.uri, name, None)[0])

    again, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert asked == []  # every watermark unchanged: no request at all
    _same(again, first)

    add_points(client, ids[1], 420, 500, seed=1)
    third, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert asked == [{ids[1]: {"loss": 400, "learning_rate": 400}}]  # from the cached last step on
    assert third[ids[1]]["loss"].steps[-1] == 500
    _same(third, _read(mlflow_server.uri, name, None)[0])


def test_sampled_reads_keep_first_and_last_and_append_the_tail(mlflow_server, experiment, tmp_path) -> None:
    client, name, ids = experiment
    got, _ = _read(mlflow_server.uri, name, _cache(tmp_path, 8), 8)
    full = _read(mlflow_server.uri, name, None)[0]
    for rid in ids:
        s, f = got[rid]["loss"], full[rid]["loss"]
        assert 2 <= len(s) <= 8 and s.steps[0] == f.steps[0] and s.steps[-1] == f.steps[-1]
        assert np.isin(s.steps, f.steps).all()
    add_points(client, ids[0], 420, 480, seed=0)
    tail, asked = _read(mlflow_server.uri, name, _cache(tmp_path, 8), 8)
    assert asked == [{ids[0]: {"loss": 400, "learning_rate": 400}}]
    assert list(tail[ids[0]]["loss"].steps[-5:]) == [400, 420, 440, 460, 480]


def test_each_key_read_at_its_own_sample_size(mlflow_server, experiment, tmp_path) -> None:
    """The sync's default: the LR sampled, the metric whole; one request per size, the cache keeps both."""
    client, name, ids = experiment
    sample = {"loss": None, "learning_rate": 8}
    got, asked = _read(mlflow_server.uri, name, _cache(tmp_path, sample), sample)
    assert asked == [{rid: {"loss": None} for rid in ids}, {rid: {"learning_rate": None} for rid in ids}]
    full = _read(mlflow_server.uri, name, None)[0]
    for rid in ids:
        assert np.array_equal(got[rid]["loss"].steps, full[rid]["loss"].steps)
        lr, f = got[rid]["learning_rate"], full[rid]["learning_rate"]
        assert 2 <= len(lr) <= 8 < len(f) and (lr.steps[0], lr.steps[-1]) == (f.steps[0], f.steps[-1])
    add_points(client, ids[0], 420, 480, seed=0)
    tail, asked = _read(mlflow_server.uri, name, _cache(tmp_path, sample), sample)
    assert asked == [{ids[0]: {"loss": 400}}, {ids[0]: {"learning_rate": 400}}]
    assert list(tail[ids[0]]["learning_rate"].steps[-4:]) == [420, 440, 460, 480]
    # another sample size is another cache: nothing of it is trusted
    _, asked = _read(mlflow_server.uri, name, _cache(tmp_path, {"learning_rate": 16}), {"learning_rate": 16})
    assert all(v is None for req in asked for keys in req.values() for v in keys.values())


def test_rewritten_history_is_read_again_in_full(mlflow_server, experiment, tmp_path, caplog) -> None:
    client, name, ids = experiment
    _read(mlflow_server.uri, name, _cache(tmp_path))
    # the point at the cached last step is logged again with another value (a re-run that
    # overwrote its history), then the run goes on
    client.log_batch(ids[2], metrics=[Metric("loss", 9.0, 1_800_000_000_000, 400)])
    add_points(client, ids[2], 420, 460, seed=2)
    with caplog.at_level(logging.INFO, logger="forecaster.cache"):
        got, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert asked[0] == {ids[2]: {"loss": 400, "learning_rate": 400}}
    assert asked[1] == {ids[2]: {"loss": None}}  # the join did not match: loss read in full
    assert "rewritten" in caplog.text
    _same(got, _read(mlflow_server.uri, name, None)[0])
    assert got[ids[2]]["loss"].values[got[ids[2]]["loss"].steps == 400][0] == 9.0


@pytest.mark.parametrize("damage", ["garbage", "foreign", "other-settings"])
def test_corrupt_or_foreign_cache_is_rebuilt_with_a_message(mlflow_server, experiment, tmp_path, caplog,
                                                            damage) -> None:
    _, name, _ = experiment
    path = tmp_path / "history.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE customers (name TEXT)")
    else:
        _read(mlflow_server.uri, name, hc.HistoryCache(path, "test", 50), 50)
    with caplog.at_level(logging.WARNING, logger="forecaster.cache"):
        got, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert "rebuilt" in caplog.text and str(path) in caplog.text
    assert all(v is None for req in asked for keys in req.values() for v in keys.values())  # nothing trusted
    _same(got, _read(mlflow_server.uri, name, None)[0])
    assert list(tmp_path.glob("history.sqlite.bad-*"))  # set aside, not deleted
    again, asked = _read(mlflow_server.uri, name, _cache(tmp_path))
    assert asked == []  # the rebuilt cache serves the next read


def test_concurrent_syncs_sharing_a_cache_file(mlflow_server, experiment, tmp_path) -> None:
    """Two syncs that do not share a lock (different lock files) still leave a sound cache."""
    client, name, ids = experiment
    errors: list[BaseException] = []
    results: list[dict] = []

    def one() -> None:
        try:
            results.append(_read(mlflow_server.uri, name, _cache(tmp_path))[0])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    full = _read(mlflow_server.uri, name, None)[0]
    for r in results:
        _same(r, full)
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 6
    assert _read(mlflow_server.uri, name, _cache(tmp_path))[1] == []


class _NoBulkProxy(http.server.ThreadingHTTPServer):
    """A loopback gateway in front of the real server that does not pass the sampled history route
    (as an older MLflow, or a proxy allowing only the documented REST API, answers it)."""

    def __init__(self, upstream: str) -> None:
        up = upstream

        class H(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if "get-history-bulk-interval" in self.path:
                    self.send_response(404)
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(up + self.path, data=body, method=self.command,
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, headers, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *a) -> None:
                pass

        super().__init__(("127.0.0.1", 0), H)
        self.uri = f"http://127.0.0.1:{self.server_address[1]}"


def test_server_without_the_bulk_route_falls_back(mlflow_server, experiment, tmp_path) -> None:
    client, name, ids = experiment
    proxy = _NoBulkProxy(mlflow_server.uri)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        t = _Recording(uri=proxy.uri, experiments=[name])
        with t:
            runs = t.list_runs()
            got = {r.id: h for r, h in hc.read_histories(t, runs, KEYS, _cache(tmp_path), 1000)}
            assert t._bulk is False
        _same(got, _read(mlflow_server.uri, name, None)[0])
        add_points(client, ids[0], 420, 460, seed=0)
        t = _Recording(uri=proxy.uri, experiments=[name])
        with t:
            got = {r.id: h for r, h in hc.read_histories(t, t.list_runs(), KEYS, _cache(tmp_path), 1000)}
        assert t.asked == [{ids[0]: {"loss": 400, "learning_rate": 400}}]
        _same(got, _read(mlflow_server.uri, name, None)[0])
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_sync_uses_the_cache_and_forecasts_the_same(mlflow_server, experiment, tmp_path) -> None:
    """The engine end to end: a cached sync's forecasts match a sync without the cache."""
    client, name, ids = experiment
    path = tmp_path / "h.sqlite"
    t = _Recording(uri=mlflow_server.uri, experiments=[name])
    with t:
        first = sync(t, SyncSettings(law=LAW, plots=False, history_cache=path), progress=False)
    assert len(first.by("forecast")) == 3 and path.exists()
    add_points(client, ids[0], 420, 500, seed=0)
    t = _Recording(uri=mlflow_server.uri, experiments=[name])
    with t:
        cached = sync(t, SyncSettings(law=LAW, plots=False, history_cache=path, dry_run=True), progress=False)
    asked: dict = {}  # (one request per sample size: the LR is read sampled)
    for req in t.asked:
        for rid, keys in req.items():
            asked.setdefault(rid, {}).update(keys)
    assert asked == {ids[0]: {"loss": 400, "learning_rate": 400}}  # the siblings came from the cache
    t = _Recording(uri=mlflow_server.uri, experiments=[name])
    with t:
        plain = sync(t, SyncSettings(law=LAW, plots=False, dry_run=True), progress=False)
    a = {o.run.id: o.forecast.final for o in cached.by("forecast")}
    b = {o.run.id: o.forecast.final for o in plain.by("forecast")}
    assert a == pytest.approx(b, rel=1e-9)


def test_exact_reads_through_the_bulk_route_match_get_metric_history(mlflow_server) -> None:
    """Exact reads go in windows under the route's 2,500-point cap; a window a run fills (several
    values per step) is read with get_metric_history, so nothing is ever silently sampled."""
    client = MlflowClient(mlflow_server.uri)
    name = f"cache-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name)
    t0 = 1_700_000_000_000
    long_run = client.create_run(exp, run_name="long").info.run_id
    twice = client.create_run(exp, run_name="twice").info.run_id
    steps = np.arange(6000)
    ms = [Metric("loss", float(2 + np.sin(s / 50)), t0 + int(s), int(s)) for s in steps]
    for i in range(0, len(ms), 1000):
        client.log_batch(long_run, metrics=ms[i:i + 1000])
    ms = [Metric("loss", float(s), t0 + int(s), int(s)) for s in range(3000)]
    ms += [Metric("loss", float(-s), t0 + 10**7 + int(s), int(s)) for s in range(3000)]  # later: wins
    for i in range(0, len(ms), 1000):
        client.log_batch(twice, metrics=ms[i:i + 1000])
    t = _Recording(uri=mlflow_server.uri, experiments=[name])
    with t:
        runs = t.list_runs()
        bulk = {r.id: h for r, h in t.read_since(runs, {r.id: {"loss": None} for r in runs})}
        assert t._bulk is True
        plain = {r.id: h for r, h in t.read_histories(runs, ["loss"])}
    _same(bulk, plain)
    assert len(bulk[long_run]["loss"]) == 6000 and bulk[twice]["loss"].values[10] == -10.0


def test_cli_keeps_the_cache_beside_the_lock_file(mlflow_server, experiment, tmp_path) -> None:
    from click.testing import CliRunner

    from forecaster.cli import main

    _, name, _ = experiment
    base = ["sync", "--tracking-uri", mlflow_server.uri, "-e", name, "--law", LAW, "--no-plots", "--dry-run"]
    res = CliRunner().invoke(main, [*base, "--lock-file", str(tmp_path / "a" / "lock"), "--sample", "50"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (made,) = (tmp_path / "a").glob("history-*.sqlite")
    with sqlite3.connect(made) as db:
        assert dict(db.execute("SELECT k, v FROM meta"))["sample"] == "50"
        assert db.execute("SELECT MAX(n) FROM series").fetchone()[0] <= 50
    res = CliRunner().invoke(main, [*base, "--lock-file", str(tmp_path / "b" / "lock"), "--no-cache"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert not list((tmp_path / "b").glob("history-*"))


def test_local_store_answers_the_bulk_query_itself(mlflow_server, experiment, tmp_path) -> None:
    """sqlite:/// with no server: the store object runs the same query; tails and samples as over REST."""
    client, name, ids = experiment
    full, _ = _read(mlflow_server.uri, name, None)
    local = _Recording(uri=mlflow_server.db_uri, experiments=[name])
    with local:
        runs = local.list_runs()
        got = {r.id: h for r, h in hc.read_histories(local, runs, KEYS, _cache(tmp_path))}
        assert local._bulk is True
    _same(got, full)
