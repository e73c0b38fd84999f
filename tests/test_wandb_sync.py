"""`forecast sync --tracker wandb` end to end: the real wandb client against the loopback W&B server.

The same scenarios as the MLflow sync tests: first sync, no-op sync, revision, untouched user
runs, runs without config, rate limits and API errors, a run deleted mid-sync; plus offline
runs (``--wandb-dir``) whose files must stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

wandb = pytest.importorskip("wandb")

pytest.importorskip("forecaster.sync")

from click.testing import CliRunner  # noqa: E402

from forecaster.cli import main  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402
from forecaster.trackers import TrackerError  # noqa: E402
from forecaster_wandb import WandbTracker  # noqa: E402
from forecaster_wandb.offline_runs import read_run, run_dirs  # noqa: E402
from mlflow_runs import cosine_lr, synthetic_loss  # noqa: E402 - how HF Trainer runs look
from wandb_server import WandbTestServer, file_digests, server  # noqa: E402,F401 - server is a fixture

LAW = "multipower"  # one law keeps the suite fast; law choice is the core's to test
ENTITY = "lab"
HF = {"learning_rate": 3e-4, "lr_scheduler_type": "cosine", "warmup_steps": 100, "max_steps": 2000,
      "num_train_epochs": 3.0, "per_device_train_batch_size": 8}
LOSS, LR = "train/loss", "train/learning_rate"  # what the HF W&B callback logs


def _hf_metrics(upto: int, seed: int, scale: float = 1.0, log_lr: bool = True, every: int = 20,
                start: int = 0) -> tuple[list[int], dict[str, list[float]]]:
    steps = np.arange(every, upto + 1, every)
    lr = cosine_lr(steps, 3e-4, 100, 2000)
    loss = synthetic_loss(steps, lr, scale, seed)
    keep = steps > start
    metrics = {LOSS: loss[keep].tolist()}
    if log_lr:
        metrics[LR] = lr[keep].tolist()
    return steps[keep].tolist(), metrics


def _add(server: WandbTestServer, project: str, name: str, *, upto: int = 2000, seed: int = 0,
         state: str = "running", config: dict | None = HF, log_lr: bool = True, scale: float = 1.0):
    steps, metrics = _hf_metrics(upto, seed, scale, log_lr)
    return server.add_run(ENTITY, project, name, metrics=metrics, steps=steps, config=config, state=state)


def _user_state(run) -> tuple:
    return ([dict(r) for r in run.history], dict(run.config), run.state, run.group, run.job_type)


def _sync(project: str, tmp: Path, **kw):
    """The engine directly (cheaper fit settings) for the failure scenarios."""
    settings = SyncSettings(metrics=(LOSS,), lr_keys=(LR,), law=LAW, plots=False, workers=2,
                            forecaster_options={"samples": 50, "max_points": 64})
    with WandbTracker(experiments=[f"{ENTITY}/{project}"], cache_dir=str(tmp / "cache"), **kw) as tr:
        return sync(tr, settings, progress=False)


def _cli(server_tmp: Path, project: str, *extra: str):
    args = ["sync", "--tracker", "wandb", "--project", f"{ENTITY}/{project}", "--metric", LOSS,
            "--lr-key", LR, "--law", LAW, "--no-plots", "--lock-file", str(server_tmp / f"{project}.lock"), *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def scenario(server, tmp_path_factory):
    """A project logged like the HF W&B callback, synced once through the CLI."""
    tmp = tmp_path_factory.mktemp("wandb-sync")
    project = "sync-main"
    runs = {
        "done_a": _add(server, project, "done_a", seed=1, state="finished"),
        "live": _add(server, project, "live", upto=800, seed=4),
        "nolr": _add(server, project, "nolr", upto=800, seed=5, log_lr=False),  # schedule from config
        "noconf": _add(server, project, "noconf", upto=800, seed=6, log_lr=False, config={}),
    }
    before = {k: _user_state(v) for k, v in runs.items()}
    res = _cli(tmp, project)
    return {"server": server, "project": project, "runs": runs, "before": before, "first": res, "tmp": tmp}


def _companions(server: WandbTestServer, project: str, source: str) -> list:
    return [r for r in server.project_runs(ENTITY, project)
            if r.job_type == "forecast" and r.config.get("forecast", {}).get("value", {}).get("source") == source]


def test_first_sync_writes_companion_runs_beside_live_runs(scenario) -> None:
    res, server, project = scenario["first"], scenario["server"], scenario["project"]
    assert res.exit_code == 0, res.output
    assert "4 runs seen: 2 forecast" in res.output and "1 skipped" in res.output
    for name in ("live", "nolr"):
        (comp,) = _companions(server, project, name)
        src = scenario["runs"][name]
        assert comp.state == "finished" and comp.group == f"forecast:{name}"
        steps, values = comp.metric(LOSS)  # the same key as the source: one more line in its panel
        assert steps[0] == src.last_step and steps[-1] == 2000  # from the join to the planned end
        assert np.all(np.isfinite(values)) and 1.0 < values[-1] < values[0] * 1.05
        lo, hi = comp.metric(LOSS + ".p10")[1], comp.metric(LOSS + ".p90")[1]
        assert np.all(np.array(lo) <= np.array(values)) and np.all(np.array(values) <= np.array(hi))
        block = src.summary["forecast"]
        assert block["run_id"] == comp.name and block["status"] == "ok"
        assert block["final"] == pytest.approx(values[-1], rel=1e-4)
    assert not _companions(server, project, "done_a")  # finished runs are context only


def test_user_runs_keep_history_config_and_state(scenario) -> None:
    for name, run in scenario["runs"].items():
        assert _user_state(run) == scenario["before"][name], name


def test_run_without_config_is_skipped_with_reason(scenario) -> None:
    src = scenario["runs"]["noconf"]
    assert src.summary["forecast"]["status"] == "skipped"
    assert "no schedule" in src.summary["forecast"]["skipped"]
    assert "noconf" in scenario["first"].output and "skipped: no schedule" in scenario["first"].output


def test_second_sync_is_a_no_op_then_a_revision_replaces_the_companion(scenario) -> None:
    server, project, tmp = scenario["server"], scenario["project"], scenario["tmp"]
    server.reset_log()
    res = _cli(tmp, project)
    assert res.exit_code == 0, res.output
    assert "0 forecast, 3 unchanged" in res.output and "0 writes" in res.output
    writes = {"UpsertBucket", "CreateRunFiles", "DeleteRun", "file_stream", "NotifyScriptableRunAlert"}
    assert not writes & set(server.operations), server.operations
    assert server.count("SampledHistoryPage") == 0  # nothing was read beyond the listing

    live = scenario["runs"]["live"]
    (old,) = _companions(server, project, "live")
    steps, metrics = _hf_metrics(1000, seed=4, start=800)
    for i, s in enumerate(steps):
        live.history.append({"_step": s, LOSS: metrics[LOSS][i], LR: metrics[LR][i]})
    live.summary.update({"_step": steps[-1], LOSS: metrics[LOSS][-1], LR: metrics[LR][-1]})
    before = _user_state(live)
    res = _cli(tmp, project)
    assert res.exit_code == 0, res.output
    assert "1 forecast" in res.output
    (new,) = _companions(server, project, "live")
    assert new.name != old.name and (ENTITY, project, old.name) in server.deleted
    assert new.metric(LOSS)[0][0] == 1000 and live.summary["forecast"]["run_id"] == new.name
    assert _user_state(live) == before


def test_run_deleted_mid_sync_is_skipped_and_others_proceed(server, tmp_path) -> None:
    project = "deleted-mid-sync"
    _add(server, project, "a", upto=800, seed=11)
    _add(server, project, "b", upto=900, seed=12)
    _add(server, project, "c", upto=700, seed=13)

    def drop(variables: dict) -> None:
        if variables.get("name") == "b":
            server.delete_run(ENTITY, project, "b")

    server.on("RunHistoryKeys", drop)
    try:
        rep = _sync(project, tmp_path)
    finally:
        server._hooks.pop("RunHistoryKeys", None)
    assert rep.skipped["b"].startswith("gone") and len(rep.by("forecast")) == 2
    assert _companions(server, project, "a") and _companions(server, project, "c")
    assert not _companions(server, project, "b")


def test_run_deleted_between_syncs_loses_its_companion(server, tmp_path) -> None:
    project = "deleted-between-syncs"
    _add(server, project, "keep", upto=800, seed=14)
    _add(server, project, "gone", upto=800, seed=15)
    assert len(_sync(project, tmp_path).by("forecast")) == 2
    (orphan,) = _companions(server, project, "gone")
    server.delete_run(ENTITY, project, "gone")
    rep = _sync(project, tmp_path)
    assert rep.writes == 1 and len(rep.by("unchanged")) == 1
    assert not _companions(server, project, "gone") and server.run(ENTITY, project, orphan.name) is None
    assert len(_companions(server, project, "keep")) == 1


def test_a_filter_refused_by_wandb_is_bad_input(server, tmp_path) -> None:
    project = "bad-filter"
    _add(server, project, "r", upto=800, seed=16)
    server.fail("Runs", status=400, times=1)
    res = CliRunner().invoke(main, ["sync", "--tracker", "wandb", "--project", f"{ENTITY}/{project}",
                                    "--filter", '{"config.x": {"$bogus": 1}}', "--lock-file", str(tmp_path / "l")])
    assert res.exit_code == 2 and res.output.startswith("error: --filter was refused by W&B"), res.output
    assert res.output.count("\n") == 1


def test_rate_limited_sync_backs_off_and_completes(server, tmp_path) -> None:
    project = "rate-limited"
    _add(server, project, "r", upto=800, seed=21)
    _add(server, project, "f", seed=22, state="finished")
    server.fail("Runs", status=429, times=2, retry_after=1)
    server.fail("UpsertBucket", status=429, times=1, retry_after=1)
    before = server.count("Runs")
    rep = _sync(project, tmp_path)
    assert len(rep.by("forecast")) == 1 and _companions(server, project, "r")
    assert server.count("Runs") - before == 4  # two refusals, then the source and companion listings


def test_api_errors_are_one_line_and_exit_1(server, tmp_path) -> None:
    project = "broken"
    _add(server, project, "r", upto=800, seed=31)
    server.fail("Runs", status=403, times=1)
    res = _cli(tmp_path, project)
    assert res.exit_code == 1
    assert res.output.strip().startswith("error: W&B refused the credentials") and "\n" not in res.output.strip()
    assert not _companions(server, project, "r")


def test_failed_revision_keeps_the_previous_complete_forecast(server, tmp_path) -> None:
    project = "write-fails"
    run = _add(server, project, "r", upto=800, seed=41)
    assert len(_sync(project, tmp_path).by("forecast")) == 1
    (old,) = _companions(server, project, "r")
    steps, metrics = _hf_metrics(900, seed=41, start=800)
    for i, s in enumerate(steps):
        run.history.append({"_step": s, LOSS: metrics[LOSS][i], LR: metrics[LR][i]})
    run.summary.update({"_step": steps[-1], LOSS: metrics[LOSS][-1]})
    server.fail("UpsertBucket", status=403, times=1)  # the new companion cannot be created
    with pytest.raises(TrackerError, match="refused"):
        _sync(project, tmp_path)
    assert [c.name for c in _companions(server, project, "r")] == [old.name]
    assert run.summary["forecast"]["run_id"] == old.name  # still names a complete forecast
    assert len(_sync(project, tmp_path).by("forecast")) == 1  # the next tick recovers
    (new,) = _companions(server, project, "r")
    assert new.name != old.name and run.summary["forecast"]["run_id"] == new.name


def test_unknown_project_is_input_error(server, tmp_path) -> None:
    res = CliRunner().invoke(main, ["sync", "--tracker", "wandb", "--project", "not-entity-slash-project",
                                    "--lock-file", str(tmp_path / "l")])
    assert res.exit_code == 2 and "ENTITY/PROJECT" in res.output


# -- offline ---------------------------------------------------------------------------------------
def _offline_hf_run(root: Path, run_id: str, upto: int, seed: int, finished: bool) -> None:
    steps, metrics = _hf_metrics(upto, seed)
    run = wandb.init(mode="offline", dir=str(root), project="cluster", id=run_id, config=HF,
                     reinit="create_new", settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    for i, s in enumerate(steps):
        run.log({LOSS: metrics[LOSS][i], LR: metrics[LR][i]}, step=s)
    if finished:
        run.finish()
    else:
        run.finish(exit_code=0)


def test_offline_runs_are_forecast_into_offline_companions(tmp_path) -> None:
    root = tmp_path / "job"
    _offline_hf_run(root, "off1", 2000, seed=1, finished=True)
    _offline_hf_run(root, "off2", 600, seed=2, finished=False)
    wandb.teardown()  # flush the user's runs before fingerprinting their files
    user = {d.name for d in run_dirs(root / "wandb")}
    before = file_digests(root / "wandb")
    args = ["sync", "--tracker", "wandb", "--wandb-dir", str(root / "wandb"), "--metric", LOSS,
            "--lr-key", LR, "--law", LAW, "--no-plots", "--include-ended", "--lock-file", str(tmp_path / "l")]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2 runs seen: 1 forecast" in res.output and "skipped (done x1)" in res.output
    after = file_digests(root / "wandb")
    assert {k: v for k, v in after.items() if k in before} == before  # the user's files: byte-identical
    (comp_dir,) = [d for d in run_dirs(root / "wandb") if d.name not in user]
    comp = read_run(comp_dir)
    assert comp.job_type == "forecast" and comp.project == "cluster" and comp.exit_code == 0
    assert comp.history(LOSS)[0][0] == 600 and comp.history(LOSS)[0][-1] == 2000
    # a second sync changes nothing
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0 and "0 writes" in res.output, res.output
    assert {d.name for d in run_dirs(root / "wandb")} == user | {comp_dir.name}
