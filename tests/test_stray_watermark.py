"""A stray high step (far beyond the planned end) must not hide a run's later progress.

MLflow reports, per key, the point at the highest step as the run's latest metric: once a run
logged one point at step 50,000 of a 1,000-step plan, that watermark never moves again, however
far the run trains. Against a real `mlflow server`, with the history cache on and off.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, log_hf_run, recording_mlflow  # noqa: E402

from forecaster import tags  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402

STRAY = 50_000  # 50x the planned end of 1,000 steps


_Recording = recording_mlflow()


def _sync(uri: str, name: str, cache):
    t = _Recording(uri=uri, experiments=[name])
    with t:
        rep = sync(t, SyncSettings(law="momentum", plots=False, history_cache=cache), progress=False)
    return rep, t.asked


def _experiment(client, stray: bool) -> tuple[str, list[str]]:
    name = f"stray-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name)
    ids = [log_hf_run(client, exp, f"r{i}", upto=400, seed=i, status="RUNNING") for i in range(3)]
    if stray:
        client.log_batch(ids[0], metrics=[Metric("loss", 2.5, 1_700_000_000_000, STRAY)])
    return name, ids


@pytest.mark.parametrize("cached", [True, False])
def test_progress_below_a_stray_step_is_seen(mlflow_server, tmp_path, cached) -> None:
    client = MlflowClient(mlflow_server.uri)
    name, ids = _experiment(client, stray=True)
    cache = tmp_path / "h.sqlite" if cached else None

    first, _ = _sync(mlflow_server.uri, name, cache)
    assert {o.run.id for o in first.by("forecast")} == set(ids)
    fc0 = next(o.forecast for o in first.by("forecast") if o.run.id == ids[0])
    assert int(fc0.steps[0]) == 400  # joined at the last plausible step: the stray was screened out

    add_points(client, ids[0], 420, 600, seed=0)  # the run trains on below its stray step
    assert client.get_run(ids[0]).data.metrics["loss"] == 2.5  # MLflow's latest is still the stray
    second, asked = _sync(mlflow_server.uri, name, cache)
    moved = {o.run.id: o for o in second.by("forecast")}
    assert ids[0] in moved, second.summary()
    assert int(moved[ids[0]].forecast.steps[0]) == 600  # joined at the real last step
    if cached:
        # read from the last plausible step, not from the stray one (nor everything again)
        assert asked[0][ids[0]]["loss"] == 400
    tagged = client.get_run(ids[0]).data.tags
    assert tagged[tags.WATERMARK] == "loss@600"

    third, asked = _sync(mlflow_server.uri, name, cache)
    assert not third.by("forecast") and third.writes == 0, third.summary()
    assert {o.run.id for o in third.by("unchanged")} == set(ids)
    if cached:  # the check costs one tail read of the stray run's keys, nothing else
        assert asked == [{ids[0]: {"loss": 600}}]  # the stray key only


def test_a_run_checked_under_a_stray_watermark_is_still_context(mlflow_server, tmp_path, monkeypatch) -> None:
    """A stray-marked run found unchanged by its check read is not rewritten, but still pools with
    its siblings, on its plausible points."""
    from forecaster.sync import fitting

    client = MlflowClient(mlflow_server.uri)
    name, ids = _experiment(client, stray=True)
    cache = tmp_path / "h.sqlite"
    _sync(mlflow_server.uri, name, cache)
    add_points(client, ids[1], 420, 500, seed=1)
    fitted: list[tuple[str, int, bool]] = []
    real = fitting.fit_contained

    def spy(hist, settings, *rest):
        fitted.extend((h.run, int(h.steps[-1]), h.horizon is not None) for h in hist)
        return real(hist, settings, *rest)

    monkeypatch.setattr(fitting, "fit_contained", spy)
    rep, _ = _sync(mlflow_server.uri, name, cache)
    assert {o.run.id for o in rep.by("forecast")} == {ids[1]}, rep.summary()
    assert {o.run.id for o in rep.by("unchanged")} == {ids[0], ids[2]}
    assert rep.writes == 3  # the one revision: create, delete the superseded, tag the source
    assert sorted(fitted) == sorted([(ids[0], 400, False), (ids[1], 500, True), (ids[2], 400, False)])
