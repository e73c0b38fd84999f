"""What every tracker adapter must do, run against each: MLflow (a real loopback server), W&B
(the real client against the loopback server, and offline run folders) and the in-memory tracker.

The engine relies on these and nothing else of a tracker: list runs with their state, latest
points and config; read histories and their tails; write a complete forecast beside an untouched
source; round-trip tags; list a write cut short as partial and a deleted run's forecast as an
orphan, both removed by the next sync; and a second sync with nothing new writes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.histories import RunForecast
from forecaster.sync import SyncSettings, sync
from forecaster.trackers import FINISHED, ForecastRevision, RunGone, Tracker
from tracker_harness import (
    HF, TOTAL, Harness, MemoryHarness, MlflowHarness, WandbOfflineHarness, WandbOnlineHarness, hf_loss,
)

try:  # the W&B loopback server fixture, where wandb is installed
    from wandb_server import server  # noqa: F401 - a fixture
except ImportError:  # pragma: no cover
    server = None

ADAPTERS = ["memory", "mlflow", "wandb-online", "wandb-offline"]


@pytest.fixture(params=ADAPTERS)
def harness(request, tmp_path) -> Harness:
    kind = request.param
    if kind == "memory":
        h: Harness = MemoryHarness()
    elif kind == "mlflow":
        pytest.importorskip("mlflow")
        h = MlflowHarness(request.getfixturevalue("mlflow_server"))
    else:
        pytest.importorskip("wandb")
        srv = request.getfixturevalue("server")  # the offline client reads its environment too
        h = WandbOnlineHarness(srv, tmp_path) if kind == "wandb-online" else WandbOfflineHarness(tmp_path)
    yield h
    h.close()


def _settings(**kw) -> SyncSettings:
    """The engine with cheap fit settings; ended runs too, since offline W&B runs are all ended."""
    return SyncSettings(law="multipower", plots=False, workers=2, include_ended=True,
                        forecaster_options={"samples": 50, "max_points": 64}, **kw)


def _sync(h: Harness):
    with h.tracker() as tr:
        return sync(tr, _settings(), progress=False)


def _listed(h: Harness) -> dict[str, object]:
    with h.tracker() as tr:
        return {r.name: r for r in tr.list_runs()}


def _revision(info, start: int = 400) -> ForecastRevision:
    steps = np.arange(start, TOTAL + 1, 100, dtype=np.int64)
    p50 = 2.5 - 0.0002 * (steps - start)
    fc = RunForecast(info.id, "", steps, np.full(len(steps), 1e-4), p50, p50 - 0.1, p50 + 0.1, law="test")
    return ForecastRevision(source=info, input=f"in-{info.latest['loss'].step}", curves={"loss": fc},
                            tags={"forecast.final": f"{p50[-1]:.4f}"})


def test_lists_runs_with_state_latest_point_and_config(harness: Harness) -> None:
    live = harness.log_run("live", upto=400, seed=1)
    done = harness.log_run("done", upto=TOTAL, seed=2, status=FINISHED, config=None)
    runs = _listed(harness)
    assert set(runs) == {"live", "done"}
    assert runs["live"].id == live and runs["done"].id == done
    assert runs["live"].status == harness.live_status and runs["done"].status == FINISHED
    assert runs["live"].latest["loss"].step == 400 and runs["done"].latest["loss"].step == TOTAL
    assert runs["live"].latest["loss"].value == pytest.approx(hf_loss(400, 1)[1][-1])
    assert float(runs["live"].config["max_steps"]) == HF["max_steps"]
    assert runs["live"].forecasts == [] and runs["live"].partial == []


def test_reads_whole_histories_and_their_tails(harness: Harness) -> None:
    harness.log_run("live", upto=400, seed=1)
    steps, loss = hf_loss(400, 1)
    with harness.tracker() as tr:
        (info,) = tr.list_runs()
        ((_, got),) = list(tr.read_histories([info], ["loss", "absent"]))
        ((_, tail),) = list(tr.read_since([info], {info.id: {"loss": 300}}))
    assert "absent" not in got
    assert got["loss"].steps.tolist() == steps and np.allclose(got["loss"].values, loss)
    assert tail["loss"].steps.tolist() == [s for s in steps if s >= 300]


def test_a_run_deleted_after_the_listing_is_reported_gone(harness: Harness) -> None:
    """Reading it may still work (MLflow keeps a deleted run's history until purged); annotating it fails
    with RunGone, which the engine reports for that run alone."""
    if not harness.can_delete:
        pytest.skip(f"{harness.name}: runs are not deleted through a tracker")
    harness.log_run("kept", upto=200, seed=1)
    gone = harness.log_run("gone", upto=200, seed=2)
    with harness.tracker() as tr:
        runs = tr.list_runs()
        harness.delete_run(gone)
        got = {r.id: h for r, h in tr.read_histories(runs, ["loss"])}
        with pytest.raises(RunGone):
            tr.set_tags(next(r for r in runs if r.id == gone), {"forecast.status": "ok"})
    assert isinstance(got[gone], (RunGone, dict))
    assert len(next(h for rid, h in got.items() if rid != gone)["loss"]) == 10


def test_a_forecast_is_written_beside_an_untouched_source(harness: Harness) -> None:
    rid = harness.log_run("live", upto=400, seed=1)
    before = harness.state(rid)
    with harness.tracker() as tr:
        (info,) = tr.list_runs()
        fid = tr.create_forecast(_revision(info))
        tr.delete_forecast(info, "no-such-forecast")  # already gone: no error
    (again,) = _listed(harness).values()  # the forecast run is no source of its own
    assert again.id == rid and again.forecasts == [fid] and again.partial == []
    assert harness.state(rid) == before
    with harness.tracker() as tr:
        (info,) = tr.list_runs()
        tr.delete_forecast(info, fid)
        tr.delete_forecast(info, fid)  # twice: no error
        (info,) = tr.list_runs()
    assert info.forecasts == []


def test_tags_round_trip_and_none_removes_one(harness: Harness) -> None:
    rid = harness.log_run("live", upto=400, seed=1)
    before = harness.state(rid)
    tags = {"forecast.run_id": "abc", "forecast.input": "f00d", "forecast.alert.divergence": "firing:ab12",
            "forecast.status": "ok"}
    with harness.tracker() as tr:
        (info,) = tr.list_runs()
        tr.set_tags(info, tags)
        (info,) = tr.list_runs()
        assert {k: info.tags.get(k) for k in tags} == tags
        tr.set_tags(info, {"forecast.status": None})
        (info,) = tr.list_runs()
    assert "forecast.status" not in info.tags and info.tags["forecast.run_id"] == "abc"
    if harness.name != "wandb-offline":  # offline annotations live beside the user's files, which stay
        assert harness.state(rid)[0] == before[0]


def test_a_second_sync_with_nothing_new_writes_nothing(harness: Harness) -> None:
    rid = harness.log_run("live", upto=400, seed=1)
    before = harness.state(rid)
    first = _sync(harness)
    assert [o.action for o in first.outcomes] == ["forecast"], first.summary()
    (info,) = _listed(harness).values()
    assert len(info.forecasts) == 1 and info.tags["forecast.run_id"] == info.forecasts[0]
    assert info.tags["forecast.watermark"] == "loss@400"
    second = _sync(harness)
    assert [o.action for o in second.outcomes] == ["unchanged"], second.summary()
    assert second.writes == 0
    (again,) = _listed(harness).values()
    assert again.forecasts == info.forecasts
    if harness.name != "wandb-offline":
        assert harness.state(rid)[-1] == before[-1]


def test_new_points_revise_the_forecast_and_leave_one(harness: Harness) -> None:
    if not harness.can_grow:
        pytest.skip(f"{harness.name}: runs do not grow here")
    rid = harness.log_run("live", upto=400, seed=1)
    _sync(harness)
    (first,) = _listed(harness).values()
    harness.log_more(rid, upto=500, start=400, seed=1)
    report = _sync(harness)
    assert [o.action for o in report.outcomes] == ["forecast"], report.summary()
    (info,) = _listed(harness).values()
    assert len(info.forecasts) == 1 and info.forecasts != first.forecasts
    assert info.tags["forecast.run_id"] == info.forecasts[0] and info.tags["forecast.watermark"] == "loss@500"


def test_a_write_cut_short_is_listed_partial_and_removed_by_the_next_sync(harness: Harness) -> None:
    if not harness.can_leave_partial:
        pytest.skip(f"{harness.name}: forecasts are moved in complete, so none is ever partial")
    rid = harness.log_run("live", upto=400, seed=1)
    harness.leave_partial(rid)
    (info,) = _listed(harness).values()
    assert len(info.partial) == 1 and info.forecasts == []
    _sync(harness)
    (info,) = _listed(harness).values()
    assert info.partial == [] and len(info.forecasts) == 1


def test_the_forecast_of_a_deleted_run_is_an_orphan_the_next_sync_removes(harness: Harness) -> None:
    if not harness.can_delete:
        pytest.skip(f"{harness.name}: runs are not deleted through a tracker")
    kept = harness.log_run("kept", upto=400, seed=1)
    gone = harness.log_run("gone", upto=400, seed=2)
    _sync(harness)
    harness.delete_run(gone)
    with harness.tracker() as tr:
        tr.list_runs()
        orphans = tr.orphaned_forecasts()
    assert [src.id for src, _ in orphans] == [gone]
    _sync(harness)
    with harness.tracker() as tr:
        (info,) = tr.list_runs()
        assert tr.orphaned_forecasts() == []
    assert info.id == kept and len(info.forecasts) == 1


def test_every_adapter_is_a_tracker_found_by_its_entry_point() -> None:
    from forecaster import trackers

    found = trackers.available()
    assert {"mlflow", "wandb", "memory"} <= set(found)
    for name in ("memory", *(n for n in ("mlflow", "wandb") if _importable(n))):
        cls = trackers.load(name)
        assert issubclass(cls, Tracker) and cls.name == name


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
