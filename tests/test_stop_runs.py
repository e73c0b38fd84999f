"""`forecast sync --stop-runs`: opt-in only, asked once per run, never a status written by us.

A group with a finished good run and a running run that ends far worse (will-not-beat-best fires),
against a real `mlflow server` and the real wandb client talking to the loopback W&B server.
"""

from __future__ import annotations

import pytest

from click.testing import CliRunner

from forecaster.cli import main
from forecaster.tags import STOP as TAG_STOP
from forecaster.trackers import Tracker

LAW = "multipower"  # one law keeps the suite fast


def _cli(*args: str):
    return CliRunner().invoke(main, ["sync", *args, "--law", LAW, "--no-plots"], catch_exceptions=False)


def test_base_tracker_cannot_stop_by_default() -> None:
    class Bare(Tracker):
        name = "bare"

        def list_runs(self):  # pragma: no cover - not called
            return []

        read_histories = create_forecast = set_tags = delete_forecast = list_runs

    from forecaster.trackers import RunInfo

    with pytest.raises(NotImplementedError, match="cannot stop"):
        Bare().stop_run(RunInfo("r", "r", "s", "running"))


def test_mlflow_stop_runs_is_opt_in_tags_once_and_keeps_status(mlflow_server, tmp_path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_hf_run

    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment("sync-stop")
    log_hf_run(client, exp, "good", seed=1, scale=1.0)
    bad = log_hf_run(client, exp, "bad", upto=500, seed=2, scale=1.6, status="RUNNING")
    ok = log_hf_run(client, exp, "fine", upto=500, seed=3, scale=0.9, status="RUNNING")
    args = ["--tracking-uri", mlflow_server.uri, "-e", "sync-stop", "--lock-file", str(tmp_path / "l")]

    res = _cli(*args)  # alerts fire, but no stop without the flag
    assert res.exit_code == 0, res.output
    assert "will_not_beat_best" in res.output and "STOP" not in res.output
    assert TAG_STOP not in client.get_run(bad).data.tags

    res = _cli(*args, "--stop-runs", "--force")
    assert res.exit_code == 0, res.output
    assert res.output.count("STOP") == 1 and "cannot stop run" in res.output
    run = client.get_run(bad)
    assert run.data.tags[TAG_STOP] == "true" and run.info.status == "RUNNING"
    assert TAG_STOP not in client.get_run(ok).data.tags  # can still beat the best: not asked

    res = _cli(*args, "--stop-runs", "--force")  # still firing: asked once only
    assert res.exit_code == 0 and "STOP" not in res.output
    assert client.get_run(bad).info.status == "RUNNING"


def test_wandb_stop_runs_sends_one_stop_request(tmp_path) -> None:
    pytest.importorskip("wandb")
    from test_wandb_sync import ENTITY, LOSS, LR, _add
    from wandb_server import WandbTestServer, wandb_session_env

    with WandbTestServer() as server, wandb_session_env(server):
        project = "stop"
        _add(server, project, "good", seed=1, state="finished")
        bad = _add(server, project, "bad", upto=800, seed=2, scale=1.6)
        fine = _add(server, project, "fine", upto=800, seed=3, scale=0.9)
        args = ["--tracker", "wandb", "--project", f"{ENTITY}/{project}", "--metric", LOSS, "--lr-key", LR,
                "--lock-file", str(tmp_path / "l")]
        res = _cli(*args)
        assert res.exit_code == 0, res.output
        assert "will_not_beat_best" in res.output and bad.stop_requests == 0

        cfg = tmp_path / "f.toml"  # the config file's [alerts] table opts in as well
        cfg.write_text("[alerts]\nstop_runs = true\n")
        for _ in range(2):
            res = _cli(*args, "--config", str(cfg), "--force")
            assert res.exit_code == 0, res.output
        assert bad.stop_requests == 1 and fine.stop_requests == 0
        assert bad.state == "running"  # the run's own client ends it; we never write its state
        assert bad.summary["forecast"]["stop_requested"] == "true"
        assert not server.unknown, server.unknown
