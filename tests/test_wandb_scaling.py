"""`forecast sync --scaling --tracker wandb`: the project's scaling law as a summary run, real wandb client.

Runs of four sizes and three token counts on the loopback W&B server whose final losses follow a
known Chinchilla law; two are still running (their forecast final loss and interval stand in).
One sync writes the summary run, the next writes nothing, a run training on replaces it. The same
for offline runs (``--wandb-dir``): the summary run is one more offline run for ``wandb sync``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

wandb = pytest.importorskip("wandb")

from click.testing import CliRunner  # noqa: E402

from forecaster.cli import main  # noqa: E402
from forecaster.errors import InputError  # noqa: E402
from forecaster.scaling.sync import ScalingSettings  # noqa: E402
from forecaster.sync import SyncSettings, sync  # noqa: E402
from forecaster_wandb import WandbTracker  # noqa: E402
from forecaster_wandb.offline_runs import read_run, run_dirs  # noqa: E402
from wandb_server import WandbTestServer, server  # noqa: E402,F401 - server is a fixture

LAW = "multipower"
ENTITY, PROJECT = "lab", "scaling"
LOSS, LR = "train/loss", "train/learning_rate"
TRUTH = {"E": 1.8, "A": 400.0, "B": 600.0, "alpha": 0.34, "beta": 0.30}
SIZES = (2e7, 5e7, 1.2e8, 3e8)
TOKENS = (2e8, 6e8, 2e9)
RUNNING = {(5e7, 6e8), (1.2e8, 2e9)}
TABLE = {"n_boot": 50, "planned": [{"name": "big", "N": 1e9, "D": 2e10}]}
TOTAL = 1000


def chinchilla(N: float, D: float) -> float:
    t = TRUTH
    return t["E"] + t["A"] * N ** -t["alpha"] + t["B"] * D ** -t["beta"]


def _curve(target: float, upto: int, seed: int) -> tuple[list[int], dict[str, list[float]]]:
    """A cosine-schedule loss curve (LR logged) whose noise-free value at the last planned step is `target`."""
    steps = np.arange(20, TOTAL + 1, 20)
    prog = np.clip((steps - 50) / (TOTAL - 50), 0, 1)
    lr = np.where(steps < 50, 3e-4 * steps / 50, 3e-4 * 0.5 * (1 + np.cos(np.pi * prog)))
    area = np.cumsum(np.interp(np.arange(TOTAL + 1), steps, lr))[steps]
    clean = 2.0 + 3.0 * (1.0 + area / 0.05) ** -0.5 - 0.15 * (lr.max() - lr) / lr.max()
    noisy = clean * np.exp(0.001 * np.random.default_rng(seed).standard_normal(len(steps)))
    keep = steps <= upto
    return steps[keep].tolist(), {LOSS: (noisy * target / clean[-1])[keep].tolist(), LR: lr[keep].tolist()}


def _config(N: float, D: float) -> dict:
    return {"n_params": N, "train_tokens": D, "learning_rate": 3e-4, "lr_scheduler_type": "cosine",
            "warmup_steps": 50, "max_steps": TOTAL}


def _settings(**kw) -> SyncSettings:
    """What the CLI sync of the fixture used (so that its forecasts and fit count as unchanged)."""
    return SyncSettings(metrics=(LOSS,), lr_keys=(LR,), law=LAW, plots=False,
                        scaling=ScalingSettings.from_table(TABLE), **kw)


def _summaries(server: WandbTestServer) -> list:
    return [r for r in server.project_runs(ENTITY, PROJECT) if r.job_type == "scaling"]


@pytest.fixture(scope="module")
def scaled(server, tmp_path_factory):
    """The project, synced once through the CLI with a [scaling] table."""
    tmp = tmp_path_factory.mktemp("wandb-scaling")
    runs = {}
    seed = 0
    for N in SIZES:
        for D in TOKENS:
            seed += 1
            live = (N, D) in RUNNING
            steps, metrics = _curve(chinchilla(N, D), 700 if live else TOTAL, seed)
            runs[(N, D)] = server.add_run(ENTITY, PROJECT, f"N{N:.0e}-D{D:.0e}", metrics=metrics, steps=steps,
                                          config=_config(N, D), state="running" if live else "finished")
    server.add_run(ENTITY, PROJECT, "nosize", metrics={LOSS: [3.0, 2.9]}, steps=[1, 2], config={"x": 1})
    cfg = tmp / "forecast.toml"
    cfg.write_text(f'[sync]\nlaw = "{LAW}"\n\n[scaling]\nn_boot = 50\n'
                   'planned = [{name = "big", N = 1e9, D = 2e10}]\n')
    res = CliRunner().invoke(main, ["sync", "--tracker", "wandb", "--project", f"{ENTITY}/{PROJECT}",
                                    "--metric", LOSS, "--lr-key", LR, "--no-plots", "--config", str(cfg),
                                    "--lock-file", str(tmp / "lock")], catch_exceptions=False)
    return {"server": server, "runs": runs, "res": res, "tmp": tmp}


def test_summary_run_holds_a_fit_close_to_the_truth(scaled) -> None:
    res, server = scaled["res"], scaled["server"]
    assert res.exit_code == 0, res.output
    assert "2 forecast)" in res.output and "nosize" in res.output
    (summary,) = _summaries(server)
    assert summary.state == "finished" and summary.group == "forecast:scaling" and "scaling" in summary.tags
    cfg = summary.user_config()
    assert cfg["forecast"]["kind"] == "scaling" and cfg["forecast"]["summary"] is True
    p = cfg["scaling"]
    assert p["law"] == "chinchilla" and p["n_runs"] == 12 and p["metric"] == LOSS
    assert p["E"] == pytest.approx(TRUTH["E"], abs=0.1)
    assert p["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.06)
    assert p["beta"] == pytest.approx(TRUTH["beta"], abs=0.06)
    sm = summary.summary
    assert sm["pred.big"] == pytest.approx(chinchilla(1e9, 2e10), rel=0.03)
    assert sm["pred.big.p10"] <= sm["pred.big"] <= sm["pred.big.p90"]
    block = sm["forecast"]
    assert block["complete"] is True and block["kind"] == "scaling" and len(block["input"]) == 16
    for k in TRUTH:
        assert block[f"scaling.{k}.lo"] <= p[k] <= block[f"scaling.{k}.hi"]
    doc = json.loads(summary.files["scaling.json"])
    assert sum(pt["sigma"] > 0 for pt in doc["points"]) == 2  # forecast intervals carried into the fit
    assert "scaling.png" not in summary.files  # --no-plots
    # the source runs are annotated, never the summary run's config
    assert all(r.job_type != "scaling" for r in scaled["runs"].values())


def test_second_sync_writes_nothing_and_a_revision_replaces_the_summary(scaled) -> None:
    server, runs, tmp = scaled["server"], scaled["runs"], scaled["tmp"]
    (first,) = _summaries(server)
    server.reset_log()
    with WandbTracker(experiments=[f"{ENTITY}/{PROJECT}"], cache_dir=str(tmp / "cache")) as t:
        assert t.supports_summaries
        rep = sync(t, _settings(), progress=False)
    assert [o.action for o in rep.scaling] == ["unchanged"] and rep.writes == 0
    writes = {"UpsertBucket", "CreateRunFiles", "DeleteRun", "file_stream"}
    assert not writes & set(server.operations), server.operations
    assert [r.name for r in _summaries(server)] == [first.name]

    # a running run finishes at its planned end: its point changes, the summary run is replaced
    live = runs[(5e7, 6e8)]
    steps, metrics = _curve(chinchilla(5e7, 6e8), TOTAL, 99)
    for s, v, lr in zip(steps, metrics[LOSS], metrics[LR]):
        if s > 700:
            live.history.append({"_step": s, LOSS: v, LR: lr})
    live.summary.update({"_step": TOTAL, LOSS: metrics[LOSS][-1], LR: metrics[LR][-1]})
    live.state = "finished"
    with WandbTracker(experiments=[f"{ENTITY}/{PROJECT}"], cache_dir=str(tmp / "cache")) as t:
        rep = sync(t, _settings(), progress=False)
    assert [o.action for o in rep.scaling] == ["fit"]
    (second,) = _summaries(server)
    assert rep.scaling[0].summary_id == second.name != first.name
    assert (ENTITY, PROJECT, first.name) in server.deleted
    assert second.user_config()["scaling"]["n_runs"] == 12
    assert second.summary["forecast"]["input"] != first.summary["forecast"]["input"]


def test_half_written_summary_run_is_replaced(server, tmp_path) -> None:
    """A summary run left unfinished (no `complete` mark) is not current: written anew, then deleted."""
    with WandbTracker(experiments=[f"{ENTITY}/{PROJECT}"], cache_dir=str(tmp_path / "cache")) as t:
        (current,) = [r for r in t.list_runs() if r.tags.get("forecast.kind") == "scaling"]
    broken = server.add_run(ENTITY, PROJECT, "scaling-broken", state="crashed", job_type="scaling",
                            config={"forecast": {"kind": "scaling", "summary": True, "input": "x"}})
    with WandbTracker(experiments=[f"{ENTITY}/{PROJECT}"], cache_dir=str(tmp_path / "cache")) as t:
        listed = {r.id: r for r in t.list_runs()}
        assert "forecast.input" not in listed[broken.name].tags
        assert listed[broken.name].tags["forecast.kind"] == "scaling"
        rep = sync(t, _settings(), progress=False)
    assert [o.action for o in rep.scaling] == ["unchanged"]  # the complete one still matches
    assert (ENTITY, PROJECT, broken.name) in server.deleted
    assert [r.name for r in _summaries(server)] == [current.id]


def test_a_users_own_scaling_job_type_is_a_source_run_never_deleted(server, tmp_path) -> None:
    project = "user-scaling"
    steps, metrics = _curve(2.5, TOTAL, 7)
    server.add_run(ENTITY, project, "mine", metrics=metrics, steps=steps, job_type="scaling",
                   config=_config(1e8, 1e9))
    with WandbTracker(experiments=[f"{ENTITY}/{project}"], cache_dir=str(tmp_path / "cache")) as t:
        (info,) = t.list_runs()
        assert "forecast.kind" not in info.tags and info.config["n_params"] == 1e8
        with pytest.raises(InputError, match="not a forecaster summary run"):
            t.delete_summary(info)
    assert server.run(ENTITY, project, "mine") is not None


# -- offline ---------------------------------------------------------------------------------------
def _offline_run(root: Path, run_id: str, N: float, D: float, seed: int) -> None:
    steps, metrics = _curve(chinchilla(N, D), TOTAL, seed)
    run = wandb.init(mode="offline", dir=str(root), project="cluster", id=run_id, config=_config(N, D),
                     reinit="create_new", settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    for s, v, lr in zip(steps, metrics[LOSS], metrics[LR]):
        run.log({LOSS: v, LR: lr}, step=s)
    run.finish()


def test_offline_summary_run_is_written_beside_the_runs(tmp_path) -> None:
    root = tmp_path / "job"
    seed = 0
    for N in SIZES[:3]:
        for D in TOKENS:
            seed += 1
            _offline_run(root, f"off{seed}", N, D, seed)
    wandb.teardown()
    user = {d.name for d in run_dirs(root / "wandb")}
    settings = SyncSettings(metrics=(LOSS,), lr_keys=(LR,), law=LAW, plots=False,
                            scaling=ScalingSettings.from_table({"n_boot": 20}))
    with WandbTracker(wandb_dir=str(root / "wandb")) as t:
        rep = sync(t, settings, progress=False)
    assert [o.action for o in rep.scaling] == ["fit"], rep.scaling[0].message
    (made,) = [d for d in run_dirs(root / "wandb") if d.name not in user]
    run = read_run(made)
    assert run.job_type == "scaling" and run.project == "cluster" and run.exit_code == 0
    assert run.summary["forecast"]["complete"] is True and run.config["scaling"]["n_runs"] == 9
    assert (made / "files" / "scaling.json").exists()
    with WandbTracker(wandb_dir=str(root / "wandb")) as t:
        rep = sync(t, settings, progress=False)
    assert [o.action for o in rep.scaling] == ["unchanged"]
    assert {d.name for d in run_dirs(root / "wandb")} == user | {made.name}
