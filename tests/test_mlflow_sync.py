"""`forecast sync` against a real `mlflow server` (SQLite, loopback) and a plain sqlite:/// store.

One experiment is synced once per module and inspected by several tests; the failure cases get
their own experiments (and, for the server going away, their own server).
"""

from __future__ import annotations

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, log_hf_run  # noqa: E402

from forecaster_mlflow import run_color  # noqa: E402

from forecaster import trackers  # noqa: E402
from forecaster.cli import main  # noqa: E402
from forecaster.sync import SyncSettings, exclusive_lock, sync  # noqa: E402

LAW = "multipower"  # one law keeps the suite fast; law choice is the core's to test


def _state(client: MlflowClient, rid: str) -> dict:
    """Everything of a user's run that a sync must not change."""
    run = client.get_run(rid)
    hist = {k: [(m.step, repr(m.value), m.timestamp) for m in client.get_metric_history(rid, k)]
            for k in run.data.metrics}
    return {"status": run.info.status, "end_time": run.info.end_time, "metrics": hist,
            "params": dict(run.data.params), "lifecycle": run.info.lifecycle_stage}


def _children(client: MlflowClient, exp_id: str, rid: str, view=ViewType.ACTIVE_ONLY) -> list:
    """The forecast runs of source run `rid` (top-level runs linked by forecast.source_run)."""
    return [r for r in client.search_runs([exp_id], f"tags.`forecast.source_run` = '{rid}'", run_view_type=view)]


def _cli(*args: str):
    return CliRunner().invoke(main, ["sync", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def scenario(mlflow_server, tmp_path_factory):
    """An experiment logged like HF Trainer, synced once through the CLI with a config file."""
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-main")
    ids = {
        "done_a": log_hf_run(client, exp, "done_a", seed=1, scale=1.00),
        "done_b": log_hf_run(client, exp, "done_b", seed=2, scale=1.02),
        "failed": log_hf_run(client, exp, "failed", upto=300, seed=3, status="FAILED"),
        "live": log_hf_run(client, exp, "live", upto=400, seed=4, status="RUNNING"),
        # no LR metric at all: the schedule comes from the TrainingArguments params
        "nolr": log_hf_run(client, exp, "nolr", upto=400, seed=5, status="RUNNING", log_lr=False),
        # neither LR nor a usable config: skipped with a reason, the others go on
        "noconf": log_hf_run(client, exp, "noconf", upto=400, seed=6, status="RUNNING", log_lr=False,
                             params={"lr_scheduler_type": None, "max_steps": None, "warmup_steps": None}),
        # the user's own param names, mapped by the config file
        "mapped": log_hf_run(client, exp, "mapped", upto=350, seed=7, status="RUNNING", log_lr=False,
                             params={"max_steps": None, "my_total_steps": "1000"}),
    }
    # NaN points in the middle of a live run (a logged inf/nan loss)
    nan_loss = None
    ids["nanlive"] = log_hf_run(client, exp, "nanlive", upto=450, seed=8, status="RUNNING")
    from mlflow.entities import Metric

    client.log_batch(ids["nanlive"], metrics=[Metric("loss", float("nan"), 1_700_000_000_000 + 10**6, 200)])
    before = {k: _state(client, v) for k, v in ids.items()}
    tags_before = {k: dict(client.get_run(v).data.tags) for k, v in ids.items()}
    cfg = tmp_path_factory.mktemp("cfg") / "forecast.toml"
    cfg.write_text('[sync]\nlaw = "%s"\n\n[config.rename]\nmy_total_steps = "max_steps"\n' % LAW)
    res = _cli("--tracker", "mlflow", "--tracking-uri", mlflow_server.uri, "--experiment", "sync-main",
               "--config", str(cfg), "--lock-file", str(cfg.parent / "lock"))
    return {"client": client, "exp": exp, "ids": ids, "before": before, "tags_before": tags_before,
            "first": res, "cfg": cfg, "uri": mlflow_server.uri, "nan_loss": nan_loss}


def test_first_sync_forecasts_active_runs_into_runs_beside_them(scenario) -> None:
    res, client, ids, exp = scenario["first"], scenario["client"], scenario["ids"], scenario["exp"]
    assert res.exit_code == 0, res.output
    assert "8 runs seen: 4 forecast" in res.output
    for name in ("live", "nolr", "nanlive", "mapped"):
        tags = client.get_run(ids[name]).data.tags
        assert tags["forecast.status"] == "ok", (name, tags)
        (child,) = _children(client, exp, ids[name])
        assert tags["forecast.run_id"] == child.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["forecast.kind"] == "forecast"
        # top level (a nested run stays collapsed and undrawn in the UI), named and coloured after its source
        assert "mlflow.parentRunId" not in child.data.tags
        assert child.info.run_name == f"{client.get_run(ids[name]).info.run_name} forecast"
        assert child.data.tags["mlflow.runColor"] == run_color(ids[name])
        hist = client.get_metric_history(child.info.run_id, "loss")
        steps = sorted(m.step for m in hist)
        last_obs = max(m.step for m in client.get_metric_history(ids[name], "loss"))
        assert steps[0] == last_obs and steps[-1] == 1000  # from the last observed step (the join) to the end
        p50 = {m.step: m.value for m in hist}
        p10 = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "loss.p10")}
        p90 = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "loss.p90")}
        assert set(p10) == set(p50) == set(p90)
        assert all(p10[s] <= p50[s] <= p90[s] for s in p50)
        assert float(tags["forecast.final"]) == pytest.approx(p50[1000], rel=1e-5)
        assert tags["forecast.watermark"] == f"loss@{last_obs}"
        arts = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "forecast.png" in arts


def test_experiment_opens_on_its_training_runs(scenario) -> None:
    """MLflow 3 lands an experiment without a kind on the GenAI overview; the sync marks it as training."""
    client, exp = scenario["client"], scenario["exp"]
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"forecasts beside the real curves: {scenario['uri'].rstrip('/')}/#/experiments/{exp}/runs?" \
           "compareRunsMode=CHART&viewStateShareKey=forecast-bands" in scenario["first"].output


def test_experiment_gets_one_shared_view_drawing_the_band_on_the_loss_chart(scenario) -> None:
    """The view the printed URL opens: loss with its band on one chart, the band's own charts hidden."""
    import json

    client, exp = scenario["client"], scenario["exp"]
    views = {k: v for k, v in client.get_experiment(exp).tags.items() if k.startswith("mlflow.sharedViewState.")}
    assert list(views) == ["mlflow.sharedViewState.forecast-bands"]
    state = json.loads(views["mlflow.sharedViewState.forecast-bands"])
    shown = [c for c in state["compareRunCharts"] if not c["deleted"]]
    assert [(c["type"], c["metricKey"], c["selectedMetricKeys"]) for c in shown] == [
        ("LINE", "loss", ["loss", "loss.p10", "loss.p90"])]
    assert sorted(c["metricKey"] for c in state["compareRunCharts"] if c["deleted"]) == ["loss.p10", "loss.p90"]
    assert {c["metricSectionId"] for c in state["compareRunCharts"]} == {s["uuid"] for s in state["compareRunSections"]}


def test_band_view_is_ours_alone_and_written_only_when_it_must_change(mlflow_server) -> None:
    """Written once; rewritten only to add a metric; a user's views and a foreign value under our key stay."""
    from forecaster_mlflow import VIEW_TAG, MlflowTracker

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("band-view")
    theirs = "mlflow.sharedViewState.3f2a9c"
    client.set_experiment_tag(exp, theirs, '{"runsHiddenMode":"HIDE_ALL"}')
    writes: list[tuple[str, str]] = []

    def tracker():
        t = MlflowTracker(uri=mlflow_server.uri, experiments=[exp])
        real = t.client.set_experiment_tag
        t.client.set_experiment_tag = lambda e, k, v: (writes.append((k, v)), real(e, k, v))[1]
        return t

    plain = f"{mlflow_server.uri}/#/experiments/{exp}/runs?compareRunsMode=CHART"
    with tracker() as t:
        assert t.scope_url(exp) == plain  # no view yet: the plain chart view
    with tracker() as t:
        t._prepare_experiment(exp, ["loss"])
        t._prepare_experiment(exp, ["loss"])
        assert t.scope_url(exp) == plain + "&viewStateShareKey=forecast-bands"
    assert [k for k, _ in writes] == ["mlflow.experimentKind", VIEW_TAG]
    with tracker() as t:  # a later sync: nothing to change, nothing written
        t._prepare_experiment(exp, ["loss"])
        assert t.scope_url(exp) == plain + "&viewStateShareKey=forecast-bands"
    assert len(writes) == 2
    with tracker() as t:  # a metric the view does not draw yet is added beside the others
        t._prepare_experiment(exp, ["eval_loss"])
    assert len(writes) == 3
    from forecaster_mlflow.view import view_keys

    assert view_keys(client.get_experiment(exp).tags[VIEW_TAG]) == {"loss", "eval_loss"}
    assert client.get_experiment(exp).tags[theirs] == '{"runsHiddenMode":"HIDE_ALL"}'

    # a value under our key that is not a view we wrote is left alone, and not linked to
    client.set_experiment_tag(exp, VIEW_TAG, '{"hand": "made"}')
    with tracker() as t:
        t._prepare_experiment(exp, ["loss"])
        assert t.scope_url(exp) == plain
    assert len(writes) == 3 and client.get_experiment(exp).tags[VIEW_TAG] == '{"hand": "made"}'


def test_band_view_state_too_long_for_a_tag_is_deflated_as_the_ui_reads_it() -> None:
    import base64
    import json
    import zlib

    from forecaster_mlflow.client import MAX_TAG_VALUE
    from forecaster_mlflow.view import band_view_state, encode_view_state, view_keys

    keys = [f"eval/loss_{i}" for i in range(12)]
    value = encode_view_state(band_view_state(keys))
    assert value.startswith("deflate;") and len(value) <= MAX_TAG_VALUE
    state = json.loads(zlib.decompress(base64.b64decode(value[len("deflate;"):])))
    assert state == band_view_state(keys) and view_keys(value) == set(keys)
    # metrics under a "/" prefix are charted in the section the UI files them under
    assert [s["name"] for s in state["compareRunSections"]] == ["eval"]
    assert view_keys(encode_view_state(band_view_state(["loss"]))) == {"loss"}


def test_run_color_follows_the_mlflow_ui() -> None:
    """The UI's hash of a run id into its palette (colours read off MLflow 3.17's runs chart)."""
    assert run_color("b4e46290f47046648aa371e0390cb831") == "#2272b4"  # drawn blue
    assert run_color("6f429481e13a4324bc7a66bbf8d6ca62") == "#c83243"  # drawn red
    assert run_color("x", {"mlflow.runColor": "#123456"}) == "#123456"
    assert run_color("") == "#a6630c"


def test_user_runs_keep_status_end_time_and_metrics(scenario) -> None:
    client, ids, before = scenario["client"], scenario["ids"], scenario["before"]
    for name, rid in ids.items():
        after = _state(client, rid)
        assert after == before[name], name  # RUNNING stays RUNNING; no point under the user's keys
    assert client.get_run(ids["live"]).info.status == "RUNNING"


def test_finished_runs_are_not_written_at_all(scenario) -> None:
    client, ids, exp = scenario["client"], scenario["ids"], scenario["exp"]
    for name in ("done_a", "done_b", "failed"):
        assert dict(client.get_run(ids[name]).data.tags) == scenario["tags_before"][name]
        assert _children(client, exp, ids[name], ViewType.ALL) == []


def test_schedule_from_params_when_no_lr_is_logged(scenario) -> None:
    client, ids = scenario["client"], scenario["ids"]
    tags = client.get_run(ids["nolr"]).data.tags
    assert tags["forecast.schedule_used"].startswith("cosine(peak=3e-4, warmup=100, total=1000")
    # the config file's rename supplied max_steps for the run that logs it as my_total_steps
    assert "total=1000" in client.get_run(ids["mapped"]).data.tags["forecast.schedule_used"]


def test_run_without_schedule_is_skipped_with_reason(scenario) -> None:
    client, ids, exp = scenario["client"], scenario["ids"], scenario["exp"]
    tags = client.get_run(ids["noconf"]).data.tags
    assert tags["forecast.status"] == "skipped"
    assert tags["forecast.skipped"].startswith("no schedule:")
    assert _children(client, exp, ids["noconf"]) == []
    assert "skipped: no schedule" in scenario["first"].output


def test_nan_points_are_dropped_for_fitting_and_raise_divergence(scenario) -> None:
    tags = scenario["client"].get_run(scenario["ids"]["nanlive"]).data.tags
    assert tags["forecast.status"] == "ok" and np.isfinite(float(tags["forecast.final"]))
    assert tags["forecast.alert.divergence"].startswith("nonfinite:")
    assert "divergence" in tags["forecast.alerts"]


def test_second_sync_writes_nothing_then_a_revision_replaces_the_child(scenario) -> None:
    client, ids, exp, uri = scenario["client"], scenario["ids"], scenario["exp"], scenario["uri"]
    snapshot = {k: dict(client.get_run(v).data.tags) for k, v in ids.items()}
    n_runs = len(client.search_runs([exp], run_view_type=ViewType.ALL))

    counted = _Counting(uri=uri, experiments=["sync-main"])
    with counted:
        rep = sync(counted, SyncSettings(law=LAW, mapping=_mapping()), progress=False)
    assert counted.calls == {"list_runs": 1}  # one search, no history read, no write
    assert rep.writes == 0 and len(rep.by("unchanged")) == 5
    assert {k: dict(client.get_run(v).data.tags) for k, v in ids.items()} == snapshot
    assert len(client.search_runs([exp], run_view_type=ViewType.ALL)) == n_runs

    # the live run trains on: only it gets a new forecast run; the old one is deleted after
    old_child = snapshot["live"]["forecast.run_id"]
    add_points(client, ids["live"], 420, 500, seed=4)
    counted = _Counting(uri=uri, experiments=["sync-main"])
    with counted:
        rep = sync(counted, SyncSettings(law=LAW, mapping=_mapping()), progress=False)
    assert [o.run.name for o in rep.by("forecast")] == ["live"]
    assert counted.calls["create_forecast"] == 1 and counted.calls["delete_forecast"] == 1
    tags = client.get_run(ids["live"]).data.tags
    (child,) = _children(client, exp, ids["live"])
    assert tags["forecast.run_id"] == child.info.run_id != old_child
    assert client.get_run(old_child).info.lifecycle_stage == "deleted"
    assert tags["forecast.watermark"] == "loss@500"
    assert client.get_run(ids["live"]).info.status == "RUNNING"
    for name in ("nolr", "nanlive", "mapped"):
        assert client.get_run(ids[name]).data.tags["forecast.run_id"] == snapshot[name]["forecast.run_id"]


def _mapping():
    from forecaster.config import ConfigMapping

    return ConfigMapping(rename={"my_total_steps": "max_steps"})


class _Counting(trackers.load("mlflow")):  # type: ignore[misc]
    """The real MLflow adapter, counting the calls the engine makes."""

    def __init__(self, *a, hooks=None, **kw):
        super().__init__(*a, **kw)
        self.calls: dict[str, int] = {}
        self.hooks = hooks or {}

    def _count(self, name, *args):
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.hooks:
            self.hooks[name](*args)

    def list_runs(self):
        self._count("list_runs")
        return super().list_runs()

    def read_histories(self, runs, keys):
        self._count("read_histories", runs)
        return super().read_histories(runs, keys)

    def read_since(self, runs, since, max_points=None):
        # the engine's way in to histories: counted, and hooked, as a read
        self._count("read_histories", runs)
        return super().read_since(runs, since, max_points)

    def create_forecast(self, revision):
        self._count("create_forecast", revision)
        return super().create_forecast(revision)

    def set_tags(self, run, tags):
        self._count("set_tags", run)
        return super().set_tags(run, tags)

    def delete_forecast(self, run, fid):
        self._count("delete_forecast", run)
        return super().delete_forecast(run, fid)


def test_run_deleted_mid_sync_is_skipped_and_others_proceed(mlflow_server) -> None:
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-deleted")
    keep = log_hf_run(client, exp, "keep", upto=400, seed=11, status="RUNNING")
    gone_at_read = log_hf_run(client, exp, "gone-at-read", upto=400, seed=12, status="RUNNING")
    gone_at_write = log_hf_run(client, exp, "gone-at-write", upto=400, seed=13, status="RUNNING")

    def before_read(runs):
        client.delete_run(gone_at_read)

    def before_write(rev):
        if rev.source.id == gone_at_write:
            client.delete_run(gone_at_write)

    t = _Counting(uri=mlflow_server.uri, experiments=["sync-deleted"],
                  hooks={"read_histories": before_read, "create_forecast": before_write})
    with t:
        rep = sync(t, SyncSettings(law=LAW, workers=1), progress=False)
    assert rep.by("forecast")[0].run.id == keep and len(rep.by("forecast")) == 1
    assert rep.skipped[gone_at_read].startswith("gone:") and rep.skipped[gone_at_write].startswith("gone:")
    assert client.get_run(keep).data.tags["forecast.status"] == "ok"
    # the child written for the run deleted under us was removed again
    assert _children(client, exp, gone_at_write) == []
    assert len(_children(client, exp, keep)) == 1


def test_server_going_away_mid_sync_leaves_consistent_state(tmp_path, fast_mlflow_failures) -> None:
    from conftest import start_mlflow_server

    srv = start_mlflow_server(tmp_path / "srv")
    try:
        client = MlflowClient(srv.uri)
        exp = client.create_experiment("sync-crash")
        ids = [log_hf_run(client, exp, f"r{i}", upto=300 + 50 * i, seed=20 + i, status="RUNNING") for i in range(3)]
        t = _Counting(uri=srv.uri, experiments=["sync-crash"],
                      hooks={"set_tags": lambda run: srv.stop()})  # dies after the first child is complete
        with pytest.raises(trackers.TrackerError, match="MLflow at http://127.0.0.1"):
            with t:
                sync(t, SyncSettings(law=LAW, workers=1), progress=False)
    finally:
        srv.stop()

    # read the same store directly (no server): no source run names a forecast run that is not complete
    direct = MlflowClient(srv.db_uri)
    for rid in ids:
        run = direct.get_run(rid)
        assert run.info.status == "RUNNING"
        assert "forecast.run_id" not in run.data.tags
    # the next sync (here on the plain sqlite:/// URI) cleans up and forecasts everything once
    t = trackers.load("mlflow")(uri=srv.db_uri, experiments=["sync-crash"])
    with t:
        rep = sync(t, SyncSettings(law=LAW, plots=False), progress=False)
    assert len(rep.by("forecast")) == 3
    for rid in ids:
        (child,) = _children(direct, exp, rid)
        assert direct.get_run(rid).data.tags["forecast.run_id"] == child.info.run_id
        assert child.info.status == "FINISHED"
        assert direct.get_run(rid).info.status == "RUNNING"


def test_unreachable_tracker_is_one_line_and_exit_1(fast_mlflow_failures, tmp_path) -> None:
    from conftest import free_port

    res = CliRunner().invoke(main, ["sync", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "-e", "x",
                                    "--lock-file", str(tmp_path / "l")])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach MLflow at http://127.0.0.1:")
    assert "Traceback" not in res.output


def test_overlapping_sync_exits_75_without_touching_the_tracker(tmp_path) -> None:
    lock = tmp_path / "sync.lock"
    with exclusive_lock(lock):
        res = CliRunner().invoke(main, ["sync", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "-e", "x",
                                        "--lock-file", str(lock)])
    assert res.exit_code == 75 and "another forecast sync holds" in res.output
    assert not (tmp_path / "m.db").exists()


def test_unknown_experiment_is_input_error(tmp_path) -> None:
    MlflowClient(f"sqlite:///{tmp_path}/m.db").search_experiments()  # an existing, empty store
    res = CliRunner().invoke(main, ["sync", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "-e", "nope",
                                    "--lock-file", str(tmp_path / "l")])
    assert res.exit_code == 2 and "experiment 'nope' not found" in res.output


def test_dry_run_writes_nothing_and_skip_tags_are_written_once(mlflow_server, tmp_path) -> None:
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-dry")
    rid = log_hf_run(client, exp, "bare", upto=300, seed=31, status="RUNNING", log_lr=False,
                     params={"lr_scheduler_type": None, "max_steps": None})
    before = dict(client.get_run(rid).data.tags)
    args = ["--tracking-uri", mlflow_server.uri, "-e", "sync-dry", "--lock-file", str(tmp_path / "l")]
    res = _cli(*args, "--dry-run")
    assert res.exit_code == 0 and "[dry run]" in res.output and "0 writes" in res.output
    assert dict(client.get_run(rid).data.tags) == before
    res = _cli(*args)
    assert "1 writes" in res.output
    assert client.get_run(rid).data.tags["forecast.skipped"].startswith("no schedule:")
    res = _cli(*args)
    assert "1 unchanged" in res.output and "0 writes" in res.output


def test_child_forecasts_of_earlier_versions_still_belong_to_their_source(mlflow_server) -> None:
    """After an upgrade the old child runs are found as the source's forecasts (and so replaced)."""
    from forecaster_mlflow import MlflowTracker

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("legacy-children")
    src = log_hf_run(client, exp, "src", upto=300, status="RUNNING")
    old = client.create_run(exp, run_name="src forecast", tags={
        "mlflow.parentRunId": src, "forecast.kind": "forecast", "forecast.source": src}).info.run_id
    client.set_terminated(old, "FINISHED")
    with MlflowTracker(uri=mlflow_server.uri, experiments=[exp]) as tracker:
        (run,) = tracker.list_runs()
    assert run.id == src and run.forecasts == [old] and run.partial == []


def test_a_revision_no_chart_would_show_is_not_written(mlflow_server) -> None:
    """One more point barely moves a forecast: the drawn one stays (one tag write), until the run
    has gone far enough on that the drawn forecast's start would lag behind the real curve."""
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-kept")
    rid = log_hf_run(client, exp, "live", upto=400, seed=31, status="RUNNING")
    log_hf_run(client, exp, "done", seed=32)
    assert _cli("--tracking-uri", mlflow_server.uri, "-e", "sync-kept", "--law", LAW, "--no-plots").exit_code == 0
    first = client.get_run(rid).data.tags

    add_points(client, rid, 420, 420, seed=31)
    res = _cli("--tracking-uri", mlflow_server.uri, "-e", "sync-kept", "--law", LAW, "--no-plots")
    assert res.exit_code == 0 and "1 forecast (1 kept as drawn)" in res.output and "; 1 writes;" in res.output
    tags = client.get_run(rid).data.tags
    assert tags["forecast.run_id"] == first["forecast.run_id"] and tags["forecast.input"] != first["forecast.input"]
    assert tags["forecast.final"] == first["forecast.final"] and tags["forecast.watermark"] == first["forecast.watermark"]
    res = _cli("--tracking-uri", mlflow_server.uri, "-e", "sync-kept", "--law", LAW, "--no-plots")
    assert "1 unchanged" in res.output and "0 writes" in res.output

    add_points(client, rid, 440, 500, seed=31)  # 100 steps on: a sixth of what was left
    res = _cli("--tracking-uri", mlflow_server.uri, "-e", "sync-kept", "--law", LAW, "--no-plots")
    assert "1 forecast," in res.output and "kept" not in res.output
    (child,) = _children(client, exp, rid)
    assert client.get_run(rid).data.tags["forecast.run_id"] == child.info.run_id != first["forecast.run_id"]
