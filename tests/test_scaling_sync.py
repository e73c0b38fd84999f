"""`forecast sync --scaling` against the real `mlflow server`: an experiment's scaling law as a summary run.

Runs of four sizes and three token counts whose final losses follow a known Chinchilla law; three
are still RUNNING (their forecast final loss and interval stand in for the final loss). One sync
writes the summary run, the next writes nothing, a run training on replaces it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import cosine_lr, log_hf_run, synthetic_loss  # noqa: E402

from forecaster import trackers  # noqa: E402
from forecaster.cli import main  # noqa: E402
from forecaster.errors import InputError  # noqa: E402
from forecaster.scaling.sync import ScalingSettings, run_point  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402

LAW = "multipower"
TRUTH = {"E": 1.8, "A": 400.0, "B": 600.0, "alpha": 0.34, "beta": 0.30}
SIZES = (2e7, 5e7, 1.2e8, 3e8)
TOKENS_PER_STEP = (2e5, 6e5, 2e6)  # x max_steps 1000 -> D = 2e8, 6e8, 2e9
RUNNING = {(5e7, 6e5), (1.2e8, 2e6), (3e8, 2e5)}
TABLE = {"n_boot": 100, "planned": [{"name": "big", "N": 1e9, "D": 2e10}], "budgets": [1e20]}


def chinchilla(N: float, D: float) -> float:
    t = TRUTH
    return t["E"] + t["A"] * N ** -t["alpha"] + t["B"] * D ** -t["beta"]


def _curve(target: float, seed: int, upto: int) -> np.ndarray:
    """The HF-like synthetic curve shape, scaled so its (noise-free) value at step 1000 is `target`."""
    steps = np.arange(20, 1001, 20)
    lr = cosine_lr(steps, 3e-4, 100, 1000)
    clean = synthetic_loss(steps, lr, noise=0.0)
    noisy = synthetic_loss(steps, lr, seed=seed, noise=0.001)
    return (noisy * target / clean[-1])[: upto // 20]


def _summaries(client: MlflowClient, exp: str, view=ViewType.ACTIVE_ONLY) -> list:
    return client.search_runs([exp], "tags.`forecast.kind` = 'scaling'", run_view_type=view)


@pytest.fixture(scope="module")
def scaled(mlflow_server, tmp_path_factory):
    """The experiment, synced once through the CLI with a [scaling] table."""
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-scaling")
    ids = {}
    seed = 100
    for N in SIZES:
        for tps in TOKENS_PER_STEP:
            seed += 1
            running = (N, tps) in RUNNING
            upto = 700 if running else 1000
            # half the runs give the token count directly, half as max_steps x tokens_per_step
            size = {"n_params": f"{N:g}"}
            size.update({"train_tokens": f"{tps * 1000:g}"} if seed % 2 else {"tokens_per_step": f"{tps:g}"})
            ids[(N, tps)] = log_hf_run(client, exp, f"N{N:.0e}-D{tps * 1000:.0e}", upto=upto, seed=seed,
                                       status="RUNNING" if running else "FINISHED", params=size,
                                       loss_override=_curve(chinchilla(N, tps * 1000), seed, upto))
    log_hf_run(client, exp, "nosize", seed=1, params={"train_tokens": "1e9"})
    log_hf_run(client, exp, "badsize", seed=2, params={"n_params": "big", "train_tokens": "1e9"})
    cfg = tmp_path_factory.mktemp("scaling-cfg") / "forecast.toml"
    cfg.write_text(f'[sync]\nlaw = "{LAW}"\n\n[scaling]\nn_boot = 100\nbudgets = [1e20]\n'
                   'planned = [{name = "big", N = 1e9, D = 2e10}]\n')
    res = CliRunner().invoke(main, ["sync", "--tracking-uri", mlflow_server.uri, "-e", "sync-scaling",
                                    "--config", str(cfg), "--lock-file", str(cfg.parent / "lock")],
                             catch_exceptions=False)
    return {"client": client, "exp": exp, "ids": ids, "res": res, "uri": mlflow_server.uri}


def _settings() -> SyncSettings:
    return SyncSettings(law=LAW, scaling=ScalingSettings.from_table(TABLE))


def test_summary_run_holds_a_fit_close_to_the_truth(scaled) -> None:
    res, client, exp = scaled["res"], scaled["client"], scaled["exp"]
    assert res.exit_code == 0, res.output
    assert "3 forecast" in res.output  # the three running runs
    assert "2 run(s) without usable size/token info left out" in res.output
    assert "badsize" in res.output and "nosize" in res.output
    (summary,) = _summaries(client, exp)
    assert summary.info.status == "FINISHED" and "mlflow.parentRunId" not in summary.data.tags
    p = {k: float(summary.data.params[k]) for k in TRUTH}
    assert summary.data.params["n_runs"] == "12" and summary.data.params["law"] == "chinchilla"
    assert p["E"] == pytest.approx(TRUTH["E"], abs=0.1)
    assert p["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.06)
    assert p["beta"] == pytest.approx(TRUTH["beta"], abs=0.06)
    m = summary.data.metrics
    truth = chinchilla(1e9, 2e10)
    assert m["pred.big"] == pytest.approx(truth, rel=0.03)
    assert m["pred.big.p10"] <= m["pred.big"] <= m["pred.big.p90"]
    for k in TRUTH:
        assert float(summary.data.tags[f"forecast.scaling.{k}.lo"]) <= float(summary.data.tags[f"forecast.scaling.{k}.hi"])
    arts = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert {"scaling.png", "scaling.json"} <= arts
    doc = json.loads(open(client.download_artifacts(summary.info.run_id, "scaling.json")).read())
    sig = [pt["sigma"] for pt in doc["points"]]
    assert sum(s > 0 for s in sig) == 3  # forecast intervals carried into the fit as sigma
    # the summary run is the engine's own: never a source run, never forecast
    assert "forecast.run_id" not in summary.data.tags


def test_second_sync_writes_nothing_and_a_revision_replaces_the_summary(scaled) -> None:
    client, exp, uri, ids = scaled["client"], scaled["exp"], scaled["uri"], scaled["ids"]
    (first,) = _summaries(client, exp)
    n_all = len(client.search_runs([exp], run_view_type=ViewType.ALL))
    # a summary run left over by a sync that stopped between create and delete goes; nothing else is written
    stale = client.create_run(exp, tags={"forecast.kind": "scaling", "forecast.input": "old"}).info.run_id
    client.set_terminated(stale, "FINISHED")
    t = trackers.load("mlflow")(uri=uri, experiments=["sync-scaling"])
    with t:
        rep = sync(t, _settings(), progress=False)
    assert rep.writes == 1 and [o.action for o in rep.scaling] == ["unchanged"]
    assert client.get_run(stale).info.lifecycle_stage == "deleted"
    n_all = len(client.search_runs([exp], run_view_type=ViewType.ALL))
    # a user filter that hides the summary run: it is still found (second search), nothing is written
    t = trackers.load("mlflow")(uri=uri, experiments=["sync-scaling"], filter="params.n_params LIKE '%'")
    with t:
        rep = sync(t, _settings(), progress=False)
    assert rep.writes == 0 and [o.action for o in rep.scaling] == ["unchanged"]
    assert len(client.search_runs([exp], run_view_type=ViewType.ALL)) == n_all
    t = trackers.load("mlflow")(uri=uri, experiments=["sync-scaling"])
    with t:  # --dry-run --force: fitted and reported, never written
        rep = sync(t, SyncSettings(law=LAW, scaling=ScalingSettings.from_table(TABLE), dry_run=True, force=True),
                   progress=False)
    assert rep.writes == 0 and [o.action for o in rep.scaling] == ["would fit"]
    assert len(client.search_runs([exp], run_view_type=ViewType.ALL)) == n_all

    # a running run finishes: its point changes, the summary is replaced (new one first, then old deleted)
    from mlflow.entities import Metric

    rid = ids[(5e7, 6e5)]
    tail = _curve(chinchilla(5e7, 6e8), 999, 1000)[-15:]
    client.log_batch(rid, metrics=[Metric("loss", float(v), 1_700_000_010_000, int(s))
                                   for s, v in zip(range(720, 1001, 20), tail)])
    client.set_terminated(rid, "FINISHED")
    t = trackers.load("mlflow")(uri=uri, experiments=["sync-scaling"])
    with t:
        rep = sync(t, _settings(), progress=False)
    assert [o.action for o in rep.scaling] == ["fit"]
    (second,) = _summaries(client, exp)
    assert rep.scaling[0].summary_id == second.info.run_id != first.info.run_id
    assert client.get_run(first.info.run_id).info.lifecycle_stage == "deleted"
    assert second.data.params["n_runs"] == "12"


def test_too_few_sized_runs_is_one_line_and_the_sync_succeeds(mlflow_server, tmp_path) -> None:
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-scaling-few")
    log_hf_run(client, exp, "a", seed=1, params={"n_params": "1e7", "train_tokens": "1e8"})
    log_hf_run(client, exp, "b", seed=2, params={"n_params": "2e7", "train_tokens": "2e8"})
    live = log_hf_run(client, exp, "live", upto=400, seed=3, status="RUNNING")
    res = CliRunner().invoke(main, ["sync", "--tracking-uri", mlflow_server.uri, "-e", "sync-scaling-few",
                                    "--law", LAW, "--scaling", "--lock-file", str(tmp_path / "l")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    # off a terminal each line starts with its timestamp
    lines = [re.sub(r"^\S+T\S+ ", "", ln) for ln in res.output.splitlines()]
    lines = [ln for ln in lines if ln.startswith("scaling ")]
    assert len(lines) == 1 and "no scaling fit" in lines[0] and "live (" in lines[0] and "no size" in lines[0]
    assert client.get_run(live).data.tags["forecast.status"] == "ok"  # the forecasts go on
    assert _summaries(client, exp) == []


def test_tracker_without_summary_runs_is_a_clear_input_error() -> None:
    class Bare(trackers.Tracker):
        name = "bare"

        def list_runs(self):
            raise AssertionError("must fail before reading anything")

        read_histories = create_forecast = set_tags = delete_forecast = list_runs

    t = Bare()
    assert not t.supports_summaries
    with pytest.raises(InputError, match="not supported by the bare tracker"):
        sync(t, _settings(), progress=False)
    assert trackers.load("mlflow").create_summary is not trackers.Tracker.create_summary
    if "wandb" in trackers.available():  # W&B writes summary runs too (tests/test_wandb_scaling.py)
        assert trackers.load("wandb").create_summary is not trackers.Tracker.create_summary


def test_run_point_sources() -> None:
    s = ScalingSettings.from_table({"size_keys": "model_size"})
    fin = trackers.RunInfo("r", "r", "0", trackers.FINISHED, latest={"loss": trackers.Watermark(1000, 0, 2.5)})
    cfg = {"model_size": "1e8", "max_steps": "1000", "tokens_per_step": "5e5"}
    assert run_point(fin, cfg, "loss", None, s) == ((1e8, 5e8, 2.5, 0.0), None)
    live = trackers.RunInfo("l", "l", "0", trackers.RUNNING, tags={
        "forecast.status": "ok", "forecast.metric": "loss", "forecast.final": "2.6",
        "forecast.final_p10": "2.5", "forecast.final_p90": "2.7"})
    pt, _ = run_point(live, cfg, "loss", None, s)
    assert pt[2] == 2.6 and pt[3] == pytest.approx(0.2 / 2.5631, rel=1e-3)
    # the same forecast fresh from this sync gives the same point (6 significant digits, as tagged)
    assert run_point(live, cfg, "loss", (2.6000001, 2.4999999, 2.7000001), s)[0] == pt
    assert run_point(fin, {"n_params": "1e8"}, "loss", None, s)[1].reason.startswith("no size")
    assert run_point(fin, {"model_size": "x"}, "loss", None, s)[1].reason.startswith("bad size")
    assert run_point(fin, {"model_size": "1e8"}, "loss", None, s)[1].reason.startswith("no tokens")
    with pytest.raises(InputError, match="unknown key"):
        ScalingSettings.from_table({"lawz": "chinchilla"})
    with pytest.raises(InputError, match="planned #1"):
        ScalingSettings.from_table({"planned": [{"name": "x", "N": -1, "D": 1}]})
