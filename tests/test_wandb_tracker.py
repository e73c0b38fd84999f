"""The W&B adapter against the real wandb client: loopback server (online) and offline run folders."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

wandb = pytest.importorskip("wandb")

from forecaster.alerts import Alert  # noqa: E402
from forecaster.errors import InputError  # noqa: E402
from forecaster.histories import RunForecast  # noqa: E402
from forecaster.schedules import from_config  # noqa: E402
from forecaster.trackers import FINISHED, RUNNING, ForecastRevision, RunGone, TrackerError  # noqa: E402
from forecaster_wandb.core import companion_id  # noqa: E402
from forecaster_wandb.offline import OfflineWandbTracker  # noqa: E402
from forecaster_wandb.offline_runs import read_run, run_dirs  # noqa: E402
from forecaster_wandb.online import OnlineWandbTracker  # noqa: E402
from forecaster_wandb.tracker import WandbTracker  # noqa: E402
from wandb_server import WandbTestServer, file_digests, server  # noqa: E402,F401 - server is a fixture

HF_CONFIG = {"learning_rate": 3e-4, "lr_scheduler_type": "cosine", "warmup_steps": 10, "max_steps": 200}


@pytest.fixture
def project(server: WandbTestServer) -> str:
    return f"ent/p{uuid.uuid4().hex[:8]}"


def _loss(n: int, start: int = 0) -> list[float]:
    return [3.0 * (s + 10) ** -0.3 + 1.0 for s in range(start, start + n)]


def _tracker(project: str, tmp_path: Path, **kw) -> WandbTracker:
    return WandbTracker(experiments=[project], cache_dir=str(tmp_path / "cache"), **kw)


def _revision(info, steps, metric="loss", alerts=()) -> ForecastRevision:
    steps = np.asarray(steps, dtype=np.int64)
    p50 = 1.5 - 0.001 * (steps - steps[0])
    fc = RunForecast(info.id, "", steps, np.full(len(steps), 1e-4), p50, p50 - 0.1, p50 + 0.1, law="test")
    return ForecastRevision(source=info, input=f"in-{info.latest[metric].step}", curves={metric: fc},
                            tags={"forecast.final": f"{p50[-1]:.4f}"}, alerts=list(alerts))


def _seed(server: WandbTestServer, project: str) -> None:
    e, p = project.split("/")
    server.add_run(e, p, "hf1", metrics={"loss": _loss(60), "train/learning_rate": [3e-4] * 60},
                   config=HF_CONFIG, state="running")
    server.add_run(e, p, "bare", metrics={"loss": _loss(40)}, state="finished")
    server.add_run(e, p, "nothing", metrics={}, state="crashed")


def test_list_runs_reads_state_watermarks_and_config(server, project, tmp_path) -> None:
    _seed(server, project)
    with _tracker(project, tmp_path) as tr:
        runs = {r.id: r for r in tr.list_runs()}
    assert set(runs) == {"hf1", "bare", "nothing"}
    assert runs["hf1"].status == RUNNING and runs["bare"].status == FINISHED
    assert runs["hf1"].latest["loss"].step == 59
    assert runs["hf1"].latest["loss"].value == pytest.approx(_loss(60)[-1])
    assert "nothing" in runs and runs["nothing"].latest == {}
    sched = from_config(runs["hf1"].config)
    assert sched is not None and sched.lr(np.array([10]))[0] == pytest.approx(3e-4)
    assert from_config(runs["bare"].config) is None  # a run without config: no schedule, no error


def test_histories_are_full_concurrent_and_incremental(server, project, tmp_path) -> None:
    _seed(server, project)
    e, p = project.split("/")
    with _tracker(project, tmp_path, page_size=16) as tr:
        runs = tr.list_runs()
        got = {r.id: h for r, h in tr.read_histories(runs, ["loss", "train/learning_rate"])}
    assert np.array_equal(got["hf1"]["loss"].steps, np.arange(60))
    assert np.allclose(got["hf1"]["loss"].values, _loss(60))
    assert "train/learning_rate" not in got["bare"] and got["nothing"] == {}

    # Ten more steps arrive; the next sync (a fresh tracker) scans only from the cached end.
    run = server.run(e, p, "hf1")
    for s in range(60, 70):
        run.history.append({"_step": s, "loss": _loss(70)[s], "train/learning_rate": 2e-4})
    seen: list[dict] = []
    server.on("SampledHistoryPage", seen.append)
    with _tracker(project, tmp_path, page_size=16) as tr:
        (info,) = [r for r in tr.list_runs() if r.id == "hf1"]
        ((_, hist),) = list(tr.read_histories([info], ["loss"]))
    assert np.array_equal(hist["loss"].steps, np.arange(70))
    assert np.allclose(hist["loss"].values, _loss(70))
    import json
    assert min(json.loads(v["spec"])["minStep"] for v in seen) == 59  # started at the watermark


def test_cache_is_dropped_when_the_run_was_rewritten(server, project, tmp_path) -> None:
    e, p = project.split("/")
    server.add_run(e, p, "rw", metrics={"loss": _loss(30)})
    with _tracker(project, tmp_path) as tr:
        list(tr.read_histories(tr.list_runs(), ["loss"]))
    run = server.run(e, p, "rw")
    for row in run.history:
        row["loss"] += 1.0  # rewound and re-logged with other values
    with _tracker(project, tmp_path) as tr:
        ((_, hist),) = list(tr.read_histories(tr.list_runs(), ["loss"]))
    assert np.allclose(hist["loss"].values, np.array(_loss(30)) + 1.0)


def test_companion_run_is_written_beside_an_untouched_source(server, project, tmp_path) -> None:
    _seed(server, project)
    e, p = project.split("/")
    src = server.run(e, p, "hf1")
    before = (list(map(dict, src.history)), dict(src.config), src.state, dict(src.summary))
    alert = Alert(rule="will_not_beat_best", run="hf1", group="", firing=True, state="firing",
                  value=0.01, message="P(final < best 1.20) = 1%")
    with _tracker(project, tmp_path) as tr:
        info = next(r for r in tr.list_runs() if r.id == "hf1")
        rev = _revision(info, range(60, 200, 10), alerts=[alert])
        rev.plot_png = b"\x89PNG\r\n\x1a\n fake image bytes"
        cid = tr.create_forecast(rev)
        assert cid == companion_id(project, "hf1", rev.input)
        assert tr.create_forecast(rev) == cid  # same input: the complete companion is reused
        tr.set_tags(info, {"forecast.run_id": cid, "forecast.input": rev.input, "forecast.alert.will_not_beat_best": "firing:ab12",
                              "forecast.alert.divergence": "ok:cd34", "forecast.final": "1.36"})
        again = next(r for r in tr.list_runs() if r.id == "hf1")
    comp = server.run(e, p, cid)
    assert comp.job_type == "forecast" and comp.group == "forecast:hf1" and comp.state == "finished"
    steps, values = comp.metric("loss")
    # the points that draw the curve (`ForecastRevision.series`): its ends always among them
    assert (steps[0], steps[-1]) == (60, 190) and set(steps) <= set(range(60, 200, 10))
    assert values[0] == pytest.approx(1.5)
    assert comp.metric("loss.p10")[1][0] == pytest.approx(1.4)
    assert comp.files.get("forecast.png", b"").startswith(b"\x89PNG")
    assert comp.alerts and "hf1" in comp.alerts[0]["text"] and comp.alerts[0]["severity"] == "WARN"
    assert server.count("UpsertBucket") >= 1
    # the source: same history, config and state; our keys added to its summary and tags only
    assert (list(map(dict, src.history)), dict(src.config), src.state) == before[:3]
    assert src.summary["forecast"]["run_id"] == cid
    assert all(src.summary[k] == v for k, v in before[3].items())
    assert "forecast:will_not_beat_best" in src.tags and "forecast:divergence" not in src.tags
    assert src.summary["forecast"]["final"] == 1.36  # a number: sortable in the runs table
    assert again.forecasts == [cid] and again.tags["forecast.run_id"] == cid
    assert all(r.id != cid for r in [again])


def test_delete_forecast_only_deletes_companions(server, project, tmp_path) -> None:
    _seed(server, project)
    e, p = project.split("/")
    with _tracker(project, tmp_path) as tr:
        runs = {r.id: r for r in tr.list_runs()}
        cid = tr.create_forecast(_revision(runs["bare"], range(40, 100, 5)))
        with pytest.raises(InputError, match="refusing"):
            tr.delete_forecast(runs["bare"], "hf1")  # a user's run, whatever a tag might say
        tr.delete_forecast(runs["bare"], cid)
        tr.delete_forecast(runs["bare"], cid)  # already gone: no error
    assert server.run(e, p, cid) is None and server.run(e, p, "hf1") is not None


def test_run_deleted_mid_sync_is_reported_alone(server, project, tmp_path) -> None:
    _seed(server, project)
    e, p = project.split("/")
    with _tracker(project, tmp_path, workers=2) as tr:
        runs = tr.list_runs()
        server.delete_run(e, p, "bare")
        got = dict((r.id, h) for r, h in tr.read_histories(runs, ["loss"]))
    assert isinstance(got["bare"], RunGone)
    assert len(got["hf1"]["loss"]) == 60


def test_rate_limits_are_retried_and_hard_errors_are_clear(server, project, tmp_path) -> None:
    _seed(server, project)
    server.fail("Runs", status=429, times=1, retry_after=1)
    before = server.count("Runs")
    with _tracker(project, tmp_path) as tr:
        assert len(tr.list_runs()) == 3
    assert server.count("Runs") - before == 3  # refused once, answered, then the companion listing
    # A server that keeps failing: wandb-core gives up after its retries (one here, to stay fast).
    settings = wandb.setup().settings
    saved = settings.x_graphql_retry_max
    settings.x_graphql_retry_max = 1
    try:
        server.fail("Runs", status=500, times=2)
        with _tracker(project, tmp_path) as tr, pytest.raises(TrackerError, match="HTTP 500"):
            tr.list_runs()
    finally:
        settings.x_graphql_retry_max = saved
    server.fail("Runs", status=403, times=1)
    with _tracker(project, tmp_path) as tr, pytest.raises(TrackerError, match="credentials"):
        tr.list_runs()


def test_bad_options_are_one_line_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="ENTITY/PROJECT"):
        WandbTracker(experiments=["just-a-project"])
    with pytest.raises(InputError, match="--project"):
        WandbTracker()
    with pytest.raises(InputError, match="JSON"):
        WandbTracker(experiments=["e/p"], filter="state = running")
    with pytest.raises(InputError, match="no such directory"):
        WandbTracker(wandb_dir=str(tmp_path / "missing"))


# -- offline ---------------------------------------------------------------------------------------
def test_the_entry_point_builds_the_online_or_the_offline_tracker(tmp_path) -> None:
    online = WandbTracker(experiments=["e/p"], cache_dir="")
    offline = WandbTracker(wandb_dir=str(tmp_path))
    assert type(online) is OnlineWandbTracker and type(offline) is OfflineWandbTracker
    assert isinstance(online, WandbTracker) and isinstance(offline, WandbTracker)
    assert online.supports_summaries and offline.supports_summaries


def _offline_run(root: Path, run_id: str, n: int, config: dict | None = None, finish: bool = True) -> None:
    run = wandb.init(mode="offline", dir=str(root), project="offp", entity="ent", id=run_id,
                     config=config or {}, reinit="create_new",
                     settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    for s, v in enumerate(_loss(n)):
        run.log({"loss": v}, step=s * 10)
    run.finish(exit_code=0 if finish else 1)


def test_offline_runs_are_read_and_companions_written_as_offline_runs(server, tmp_path) -> None:
    root = tmp_path / "job"
    _offline_run(root, "offa", 30, HF_CONFIG)
    _offline_run(root, "offb", 12, finish=False)
    wandb.teardown()  # flush the user's runs completely before fingerprinting their files
    user_runs = {d.name for d in run_dirs(root / "wandb")}
    before = file_digests(root / "wandb")

    with WandbTracker(wandb_dir=str(root)) as tr:
        runs = {r.id: r for r in tr.list_runs()}
        assert runs["offa"].status == FINISHED and runs["offb"].status != FINISHED
        assert from_config(runs["offa"].config) is not None
        ((_, hist),) = list(tr.read_histories([runs["offa"]], ["loss", "absent"]))
        assert np.array_equal(hist["loss"].steps, np.arange(0, 300, 10)) and "absent" not in hist
        rev = _revision(runs["offa"], range(300, 600, 50))
        cid = tr.create_forecast(rev)
        assert tr.create_forecast(rev) == cid
        tr.set_tags(runs["offa"], {"forecast.run_id": cid, "forecast.input": rev.input})
    with WandbTracker(wandb_dir=str(root / "wandb")) as tr:
        again = {r.id: r for r in tr.list_runs()}
    assert set(again) == {"offa", "offb"}  # the companion is not a source
    assert again["offa"].forecasts == [cid] and again["offa"].tags["forecast.run_id"] == cid

    # The user's runs, their files and the latest-run / debug links are byte-identical.
    after = file_digests(root / "wandb")
    assert {k: v for k, v in after.items() if k in before} == before
    (comp_dir,) = [d for d in run_dirs(root / "wandb") if d.name not in user_runs]
    comp = read_run(comp_dir)
    assert comp.id == cid and comp.job_type == "forecast" and comp.group == "forecast:offa"
    assert comp.exit_code == 0 and comp.project == "offp"
    assert comp.history("loss")[0].tolist() == list(range(300, 600, 50))
    assert "loss.p90" in comp.series
    assert not any(p.name.startswith(".forecaster-") and p.is_dir() for p in (root / "wandb").iterdir())

    with WandbTracker(wandb_dir=str(root)) as tr:
        info = next(r for r in tr.list_runs() if r.id == "offa")
        tr.delete_forecast(info, cid)
    assert {d.name for d in run_dirs(root / "wandb")} == user_runs
    assert {k: v for k, v in file_digests(root / "wandb").items() if k in before} == before


# -- the engine's history cache over W&B (forecaster.cache) ----------------------------------------
def test_cached_reads_scan_only_from_the_watermark_online(server, project, tmp_path) -> None:
    import json

    from forecaster.cache import HistoryCache, read_histories

    _seed(server, project)
    e, p = project.split("/")
    cache = lambda: HistoryCache(tmp_path / "h.sqlite", "wandb-test", None)  # noqa: E731
    keys = ["loss", "train/learning_rate"]
    with _tracker(project, tmp_path) as tr:
        first = {r.id: h for r, h in read_histories(tr, tr.list_runs(), keys, cache())}
    assert np.array_equal(first["hf1"]["loss"].steps, np.arange(60))
    run = server.run(e, p, "hf1")
    for s in range(60, 75):
        run.history.append({"_step": s, "loss": _loss(75)[s], "train/learning_rate": 2e-4})
    seen: list[dict] = []
    server.on("SampledHistoryPage", seen.append)
    with _tracker(project, tmp_path) as tr:
        got = {r.id: h for r, h in read_histories(tr, tr.list_runs(), keys, cache())}
    assert np.array_equal(got["hf1"]["loss"].steps, np.arange(75))
    assert np.allclose(got["hf1"]["loss"].values, _loss(75))
    assert got["hf1"]["train/learning_rate"].values[-1] == 2e-4
    # only the run that moved was scanned, each key from its cached last step
    assert seen and {json.loads(v["spec"])["minStep"] for v in seen} == {59}
    assert np.array_equal(got["bare"]["loss"].steps, first["bare"]["loss"].steps)


def _growing_offline_run(tmp_path, name: str, early_steps: int, later_steps: int):
    """The same offline run at two moments (a live job's log grows): (job's wandb dir with the early
    run in it, the early run's folder, the later run's folder)."""
    import shutil

    _offline_run(tmp_path / "early", name, early_steps, HF_CONFIG, finish=False)
    _offline_run(tmp_path / "later", name, later_steps, HF_CONFIG, finish=False)
    wandb.teardown()
    (early,) = run_dirs(tmp_path / "early" / "wandb")
    (later,) = run_dirs(tmp_path / "later" / "wandb")
    job = tmp_path / "job" / "wandb"
    job.mkdir(parents=True)
    shutil.copytree(early, job / early.name)
    return job, early, later


def test_cached_reads_of_offline_runs_take_only_the_new_steps(server, tmp_path) -> None:
    import shutil

    from forecaster.cache import HistoryCache, read_histories

    job, early, later = _growing_offline_run(tmp_path, "offc", 20, 30)

    class Asking(OfflineWandbTracker):
        asked: list = []

        def read_since(self, runs, since, max_points=None):
            self.asked.append({r.id: dict(since[r.id]) for r in runs})
            return super().read_since(runs, since, max_points)

    cache = lambda: HistoryCache(tmp_path / "h.sqlite", "wandb-offline", None)  # noqa: E731
    with Asking(wandb_dir=str(job)) as tr:
        first = {r.id: h for r, h in read_histories(tr, tr.list_runs(), ["loss"], cache())}
    assert np.array_equal(first["offc"]["loss"].steps, np.arange(0, 200, 10))
    assert Asking.asked == [{"offc": {"loss": None}}]
    Asking.asked.clear()
    with Asking(wandb_dir=str(job)) as tr:
        list(read_histories(tr, tr.list_runs(), ["loss"], cache()))
    assert Asking.asked == []  # nothing new: served from the cache

    shutil.copyfile(later / "run-offc.wandb", job / early.name / "run-offc.wandb")
    with Asking(wandb_dir=str(job)) as tr:
        got = {r.id: h for r, h in read_histories(tr, tr.list_runs(), ["loss"], cache())}
    assert Asking.asked == [{"offc": {"loss": 190}}]  # from the cached last step on
    assert np.array_equal(got["offc"]["loss"].steps, np.arange(0, 300, 10))
    assert np.allclose(got["offc"]["loss"].values, _loss(30))


def test_offline_logs_are_parsed_from_the_offset_reached(server, tmp_path) -> None:
    import shutil

    from forecaster_wandb.offline_runs import read_dir

    job, early, later = _growing_offline_run(tmp_path, "offd", 20, 400)
    log_file = job / early.name / "run-offd.wandb"
    memo: dict = {}
    (first,), _ = read_dir(job, memo)
    assert not first.resumed and first.offset > 0
    # the live job appends: the same log, longer (the early one is its prefix up to the offset)
    shutil.copyfile(later / "run-offd.wandb", log_file)
    (grown,), _ = read_dir(job, memo)
    full = read_run(job / early.name)
    assert grown.series == full.series and grown.config == full.config and grown.exit_code == full.exit_code
    # a log that only grew (here: the first half of a log, then all of it) is parsed from the
    # offset reached, with the same result as a full parse
    data = log_file.read_bytes()
    half = tmp_path / "half" / "wandb"
    (half / early.name).mkdir(parents=True)
    (half / early.name / "run-offd.wandb").write_bytes(data[: len(data) // 2])
    memo = {}
    (part,), _ = read_dir(half, memo)
    (half / early.name / "run-offd.wandb").write_bytes(data)
    (whole,), _ = read_dir(half, memo)
    assert whole.resumed and part.offset < whole.offset
    assert whole.series == full.series and whole.exit_code == full.exit_code
    # a log replaced by another is not trusted: parsed again from the start
    (half / early.name / "run-offd.wandb").write_bytes((early / "run-offd.wandb").read_bytes())
    (other,), _ = read_dir(half, memo)
    assert not other.resumed and other.series["loss"][0] == list(range(0, 200, 10))


def test_cached_reads_notice_a_rewritten_online_run(server, project, tmp_path) -> None:
    from forecaster.cache import HistoryCache, read_histories

    e, p = project.split("/")
    server.add_run(e, p, "rw2", metrics={"loss": _loss(30)})
    cache = lambda: HistoryCache(tmp_path / "h.sqlite", "wandb-test", None)  # noqa: E731
    with _tracker(project, tmp_path) as tr:
        list(read_histories(tr, tr.list_runs(), ["loss"], cache()))
    run = server.run(e, p, "rw2")
    for row in run.history:
        row["loss"] += 1.0  # rewound and re-logged with other values, up to the same last step
    run.summary["loss"] = run.history[-1]["loss"]  # as W&B's summary follows the re-logged history
    with _tracker(project, tmp_path) as tr:
        ((_, hist),) = list(read_histories(tr, tr.list_runs(), ["loss"], cache()))
    assert np.allclose(hist["loss"].values, np.asarray(_loss(30)) + 1.0)
