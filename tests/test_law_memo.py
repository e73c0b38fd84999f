"""Remembered law choices (forecaster.sync.lawmemo): a group's `auto` choice is reused while its
members are the same and have grown little, and gives the forecast a full choice gives."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from forecaster import Forecaster, RunHistory, schedules
from forecaster.histories import RunForecast
from forecaster.sync.lawmemo import REFRESH, LawMemo, members_of

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, cosine_lr, log_hf_run, synthetic_loss  # noqa: E402

from forecaster import trackers  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402


def _group(n: int = 4, points: int = 300, total: int = 1000) -> list[RunHistory]:
    out = []
    for i in range(n):
        steps = np.arange(1, points + 1)
        peak = 3e-4 * (1 + 0.3 * i)
        lr = cosine_lr(steps, peak, 50, total)
        loss = synthetic_loss(steps, lr, scale=1.0 + 0.01 * i, seed=i, noise=0.01)
        sched = schedules.from_config({"learning_rate": peak, "lr_scheduler_type": "cosine",
                                       "warmup_steps": 50, "max_steps": total})
        out.append(RunHistory(f"r{i}", steps, loss, group="g", lr_steps=steps, lr_values=lr, schedule=sched,
                              horizon=np.arange(points + 10, total + 1, 10)))
    return out


def test_a_fixed_law_forecasts_what_auto_forecasts_when_it_picks_that_law() -> None:
    hist = _group()
    auto = list(Forecaster(law="auto").fit(hist).predict())
    fixed = list(Forecaster(law=auto[0].law).fit(hist).predict())
    for a, b in zip(auto, fixed):
        assert a.law == b.law
        for q in ("p10", "p50", "p90"):
            assert np.array_equal(getattr(a, q), getattr(b, q)), (a.run, q)


def test_reuse_only_for_the_same_members_grown_little() -> None:
    hist = _group(points=200)
    memo = LawMemo(None, "t", None, "settings")
    fcs = list(Forecaster(law="auto").fit(hist).predict())
    memo.record("loss", hist, fcs, {"g"})
    now = members_of(hist)["g"]
    assert memo.reuse("loss", "g", now) == fcs[0].law
    grown = {r: [last + int(REFRESH * last), lr] for r, (last, lr) in now.items()}
    assert memo.reuse("loss", "g", grown) == fcs[0].law
    too_far = dict(grown, r0=[now["r0"][0] + int(REFRESH * now["r0"][0]) + 1, True])
    assert memo.reuse("loss", "g", too_far) is None
    assert memo.reuse("loss", "g", {r: m for r, m in now.items() if r != "r3"}) is None  # one gone
    assert memo.reuse("loss", "g", {**now, "r9": [200, True]}) is None  # one added
    assert memo.reuse("loss", "g", dict(now, r1=[now["r1"][0] - 20, True])) is None  # rewound
    assert memo.reuse("loss", "g", dict(now, r1=[now["r1"][0], False])) is None  # LR no longer readable
    assert LawMemo(None, "t", None, "other settings", known=memo.known).reuse("loss", "g", now) is None
    # a group whose runs got different laws (or none) is not remembered
    memo2 = LawMemo(None, "t", None, "settings")
    memo2.record("loss", hist, [RunForecast.skip("r0", "g", "no")] + fcs[1:], {"g"})
    assert memo2.reuse("loss", "g", now) is None


class _Tracker(trackers.load("mlflow")):  # type: ignore[misc]
    pass


def _sync(uri, name, **kw):
    with _Tracker(uri=uri, experiments=[name]) as t:
        return sync(t, SyncSettings(plots=False, **kw), progress=False)


def test_sync_reuses_a_choice_that_holds_and_chooses_again_past_it(mlflow_server, tmp_path, monkeypatch) -> None:
    from forecaster.sync import fitting

    client = MlflowClient(mlflow_server.uri)
    name = f"memo-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name)
    ids = [log_hf_run(client, exp, f"r{i}", upto=400, seed=i, status="RUNNING") for i in range(4)]
    laws: list[str] = []
    inits: list[dict | None] = []
    real = fitting._fit_one

    def spy(hist, settings, law, **kw):
        laws.append(law)
        inits.append(kw.get("init"))
        return real(hist, settings, law, **kw)

    monkeypatch.setattr(fitting, "_fit_one", spy)
    cache = tmp_path / "h.sqlite"
    first = _sync(mlflow_server.uri, name, history_cache=cache)
    assert laws == ["auto"] and len(first.by("forecast")) == 4
    chosen = first.by("forecast")[0].forecast.law

    add_points(client, ids[0], 420, 420, seed=0)  # 5 % on: the choice holds
    laws.clear()
    plain = _sync(mlflow_server.uri, name, dry_run=True)  # no cache, no memo: chosen in full
    assert laws == ["auto"]
    laws.clear()
    again = _sync(mlflow_server.uri, name, history_cache=cache)
    assert laws == [chosen]  # only the remembered law was fitted
    # warm-started from the last fit's parameters, every run of the group
    assert inits[-1] and set(inits[-1]) == set(ids) and set(inits[-1][ids[0]]) == set(again.by("forecast")[0].forecast.params)
    assert [o.forecast.law for o in again.by("forecast")] == [chosen]
    assert {o.run.id for o in again.outcomes if o.action.value in ("forecast", "skipped")} == {ids[0]}
    assert plain.outcomes and again.writes > 0

    add_points(client, ids[1], 420, 480, seed=1)  # 20 % on: chosen again
    laws.clear()
    _sync(mlflow_server.uri, name, history_cache=cache)
    assert laws == ["auto"]
