"""`forecast sync` writes "cooling down now" for runs at constant LR, against a real `mlflow server`."""

from __future__ import annotations

import json

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from forecaster import tags  # noqa: E402
from forecaster.cli import main  # noqa: E402

TOTAL, PEAK, WARM, EVERY = 1000, 3e-4, 100, 20
T0 = 1_700_000_000_000


def _lr(decay_from: int | None) -> np.ndarray:
    """Per step 0..TOTAL: linear warmup, constant, then (from `decay_from`) linear to 0 at TOTAL."""
    s = np.arange(TOTAL + 1, dtype=float)
    lr = np.minimum(1.0, s / WARM) * PEAK
    if decay_from is not None:
        lr = np.where(s > decay_from, lr * np.clip((TOTAL - s) / (TOTAL - decay_from), 0, 1), lr)
    return lr


def _loss(lr: np.ndarray, seed: int) -> np.ndarray:
    area = np.cumsum(lr) / PEAK
    drop = np.cumsum(np.maximum(0.0, -np.diff(lr, prepend=lr[0]))) / PEAK
    y = 2.0 + 3.0 * (1.0 + area / 50.0) ** -0.5 - 0.15 * drop
    return y * np.exp(0.003 * np.random.default_rng(seed).standard_normal(len(y)))


def _log(client, exp, name, decay_from, upto, seed, status="RUNNING", start=EVERY, rid=None) -> str:
    lr, y = _lr(decay_from), _loss(_lr(decay_from), seed)
    steps = np.arange(start, upto + 1, EVERY)
    if rid is None:
        rid = client.create_run(exp, run_name=name).info.run_id
        client.log_batch(rid, params=[Param("max_steps", str(TOTAL)), Param("learning_rate", str(PEAK)),
                                      Param("warmup_steps", str(WARM)),
                                      Param("lr_scheduler_type", "constant_with_warmup")])
    client.log_batch(rid, metrics=[Metric("loss", float(y[s]), T0 + int(s), int(s)) for s in steps]
                     + [Metric("learning_rate", float(lr[s]), T0 + int(s), int(s)) for s in steps])
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


def _sync(uri, exp_name, cfg, *more):
    return CliRunner().invoke(main, ["sync", "--tracker", "mlflow", "--tracking-uri", uri, "--experiment", exp_name,
                                     "--config", str(cfg), "--lock-file", str(cfg.parent / f"{exp_name}.lock"), *more],
                              catch_exceptions=False)


@pytest.fixture(scope="module")
def synced(mlflow_server, tmp_path_factory):
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("whatif-sync")
    ids = {"done": _log(client, exp, "done", 700, TOTAL, 1, status="FINISHED"),
           "done2": _log(client, exp, "done2", 500, TOTAL, 2, status="FINISHED"),
           "live": _log(client, exp, "live", None, 500, 3),
           "decaying": _log(client, exp, "decaying", 400, 600, 4)}
    lone_exp = client.create_experiment("whatif-lone")
    ids["lone"] = _log(client, lone_exp, "lone", None, 500, 5)
    cfg = tmp_path_factory.mktemp("whatif-cfg") / "forecast.toml"
    cfg.write_text('[sync]\nlaw = "momentum"\n\n[alerts]\nanneal_target = 10.0\n')
    first = _sync(mlflow_server.uri, "whatif-sync", cfg)
    lone = _sync(mlflow_server.uri, "whatif-lone", cfg)
    return {"client": client, "exp": exp, "ids": ids, "cfg": cfg, "uri": mlflow_server.uri, "first": first,
            "lone": lone}


def _tags(s, name):
    return s["client"].get_run(s["ids"][name]).data.tags


def test_a_run_at_constant_lr_gets_cooling_down_now_beside_its_forecast(synced) -> None:
    assert synced["first"].exit_code == 0, synced["first"].output
    client, t = synced["client"], _tags(synced, "live")
    length = int(t[tags.IF_COOLDOWN_NOW_LENGTH])
    assert length == round(0.2 * TOTAL)
    final, lo, hi = (float(t[k]) for k in (tags.IF_COOLDOWN_NOW_FINAL, tags.IF_COOLDOWN_NOW_P10,
                                           tags.IF_COOLDOWN_NOW_P90))
    assert lo <= final <= hi
    assert tags.IF_COOLDOWN_NOW_NOTE not in t  # the finished siblings decayed: the response is identified
    # cooling down now lands below holding the LR to the same step and the forecast run draws it
    child = t[tags.RUN_ID]
    now = {m.step: m.value for m in client.get_metric_history(child, "loss.if_cooldown_now")}
    assert max(now) == 500 + length and now[max(now)] == pytest.approx(final, rel=1e-5)
    assert {m.step for m in client.get_metric_history(child, "loss.if_cooldown_now.p90")} == set(now)
    plain = {m.step: m.value for m in client.get_metric_history(child, "loss")}
    drawn = sorted(plain)  # (the points that draw each series: the steps of the two may differ)
    assert now[500 + length] < np.interp(500 + length, drawn, [plain[s] for s in drawn])
    # anneal_now: cooling down now reaches the target set in [alerts]
    assert t["forecast.alert.anneal_now"].startswith("firing:")
    # a run already decaying gets none of it
    assert not any(k.startswith("forecast.if_cooldown_now") for k in _tags(synced, "decaying"))
    assert not client.get_metric_history(_tags(synced, "decaying")[tags.RUN_ID], "loss.if_cooldown_now")


def test_the_shared_view_draws_it_on_the_loss_chart(synced) -> None:
    from forecaster_mlflow import VIEW_TAG
    from forecaster_mlflow.view import view_keys

    value = synced["client"].get_experiment(synced["exp"]).tags[VIEW_TAG]
    state = json.loads(value)
    shown = [c for c in state["compareRunCharts"] if not c["deleted"]]
    assert [(c["metricKey"], c["selectedMetricKeys"]) for c in shown] == [
        ("loss", ["loss", "loss.p10", "loss.p90", "loss.if_cooldown_now"])]
    hidden = {c["metricKey"] for c in state["compareRunCharts"] if c["deleted"]}
    assert hidden == {"loss.p10", "loss.p90", "loss.if_cooldown_now", "loss.if_cooldown_now.p10",
                      "loss.if_cooldown_now.p90"}
    assert view_keys(value) == {"loss", "loss.if_cooldown_now"}


def test_a_lone_run_that_never_decayed_gets_a_wide_band_and_a_note(synced) -> None:
    assert synced["lone"].exit_code == 0, synced["lone"].output
    t = _tags(synced, "lone")
    assert "not identif" in t[tags.IF_COOLDOWN_NOW_NOTE]
    lo, hi = float(t[tags.IF_COOLDOWN_NOW_P10]), float(t[tags.IF_COOLDOWN_NOW_P90])
    assert hi / lo > 1.01
    # even the band's no-gain edge must reach the target before anneal_now fires on an unidentified gain
    assert t["forecast.alert.anneal_now"].startswith("firing:") == (hi <= 10.0)


def test_once_the_run_decays_its_cooldown_tags_go_and_the_sync_is_idempotent(synced) -> None:
    client, rid = synced["client"], synced["ids"]["live"]
    again = _sync(synced["uri"], "whatif-sync", synced["cfg"])
    assert again.exit_code == 0 and "0 forecast" in again.output  # nothing changed: nothing written
    # the run starts its own decay at step 500
    lr, y = _lr(500), _loss(_lr(500), 3)
    steps = np.arange(520, 701, EVERY)
    client.log_batch(rid, metrics=[Metric("loss", float(y[s]), T0 + int(s), int(s)) for s in steps]
                     + [Metric("learning_rate", float(lr[s]), T0 + int(s), int(s)) for s in steps])
    res = _sync(synced["uri"], "whatif-sync", synced["cfg"])
    assert res.exit_code == 0, res.output
    t = _tags(synced, "live")
    assert t["forecast.watermark"] == "loss@700"
    assert not any(k.startswith("forecast.if_cooldown_now") for k in t)
    assert not client.get_metric_history(t[tags.RUN_ID], "loss.if_cooldown_now")


def test_cooldown_share_sets_the_length_and_zero_turns_it_off() -> None:
    """The engine alone (in-memory tracker): the share sets the length; 0 writes no what-if at all."""
    from forecaster.sync import SyncSettings, sync
    from forecaster.trackers.memory import MemoryStore, MemoryTracker

    for share, name in ((0.3, "share"), (0.0, "off")):
        store = MemoryStore()
        s = np.arange(EVERY, TOTAL + 1, EVERY)
        done = _lr(700)
        store.log_run("e", "done", {"loss": (s, _loss(done, 1)[s]), "learning_rate": (s, done[s])},
                      config={"max_steps": TOTAL}, status="finished")
        live, flat = s[s <= 500], _lr(None)
        rid = store.log_run("e", "live", {"loss": (live, _loss(flat, 3)[live]), "learning_rate": (live, flat[live])},
                            config={"max_steps": TOTAL, "lr_scheduler_type": "constant_with_warmup",
                                    "learning_rate": PEAK, "warmup_steps": WARM})
        sync(MemoryTracker(experiments=["e"], store=store), SyncSettings(law="momentum", cooldown_share=share))
        src = store.runs[rid]
        (fc,) = store.forecasts_of(rid)
        if share:
            assert src.tags[tags.IF_COOLDOWN_NOW_LENGTH] == str(round(share * TOTAL))
            assert max(st for st, _, _ in fc.metrics["loss.if_cooldown_now"]) == 500 + round(share * TOTAL)
        else:
            assert not any(k.startswith("forecast.if_cooldown_now") for k in src.tags)
            assert not any(k.startswith("loss.if_cooldown_now") for k in fc.metrics)
