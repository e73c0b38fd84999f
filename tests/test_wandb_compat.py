"""Each private wandb client API the plugin uses (`forecaster_wandb.compat`), against the real client.

A wandb upgrade that moves or changes one of them fails the test named after it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

wandb = pytest.importorskip("wandb")

from forecaster_wandb import compat  # noqa: E402
from forecaster_wandb.datastore import iter_raw  # noqa: E402
from wandb_server import WandbTestServer, server  # noqa: E402,F401 - server is a fixture


@pytest.fixture
def project(server: WandbTestServer) -> str:
    return f"ent/c{uuid.uuid4().hex[:8]}"


def test_quiet_settings(server) -> None:
    quiet = compat.quiet_settings(server.url)
    assert quiet.x_disable_stats and quiet.x_disable_meta and quiet.x_disable_machine_info
    assert quiet.x_save_requirements is False and quiet.console == "off" and quiet.silent
    assert quiet.base_url.rstrip("/") == server.url.rstrip("/")
    assert compat.quiet_settings(None).x_disable_stats


def _records(tmp_path: Path) -> list[compat.LogRecord]:
    run = wandb.init(mode="offline", dir=str(tmp_path), entity="ent", project="offp", id="cmp1", name="shown",
                     group="grp", job_type="forecast", tags=["t1"], config={"lr": 0.1, "block": {"k": "v"}},
                     reinit="create_new", settings=compat.quiet_settings())
    run.config.update({"later": 3})
    for s in range(3):
        run.log({"loss": 1.0 / (s + 1), "text": "x"}, step=10 * s)
    run.summary["forecast"] = {"complete": True, "input": "fp"}
    run.summary["gone"] = 1
    del run.summary["gone"]
    run.finish(exit_code=0)
    wandb.teardown()
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-cmp1.wandb")
    return [compat.decode_record(raw) for raw in iter_raw(log)]


def test_decode_record(server, tmp_path) -> None:
    records = _records(tmp_path)
    by_kind: dict[str | None, list[compat.LogRecord]] = {}
    for rec in records:
        by_kind.setdefault(rec.kind, []).append(rec)
    (head, *_) = by_kind["run"]
    assert head.run == {"id": "cmp1", "entity": "ent", "project": "offp", "name": "shown", "group": "grp",
                        "job_type": "forecast", "tags": ["t1"]}
    config = {"/".join(p): json.loads(t) for rec in by_kind["run"] + by_kind.get("config", []) for p, t in rec.update}
    assert config["lr"] == 0.1 and config["block"] == {"k": "v"} and config["later"] == 3
    rows = [(rec.step, {"/".join(p): json.loads(t) for p, t in rec.update}["loss"]) for rec in by_kind["history"]]
    assert rows == [(0, 1.0), (10, 0.5), (20, pytest.approx(1 / 3))]
    summary = {path: json.loads(text) for rec in by_kind["summary"] for path, text in rec.update}
    assert summary[("forecast",)] == {"complete": True, "input": "fp"}
    assert any(len(path) > 1 for path in summary)  # nested keys come as their path
    assert ("gone",) in [path for rec in by_kind["summary"] for path in rec.remove]
    assert [rec.exit_code for rec in by_kind["exit"]] == [0]


def _public_run(server: WandbTestServer, project: str, listed: bool) -> object:
    e, p = project.split("/")
    server.add_run(e, p, "r1", metrics={"loss": [3.0, 2.0, 1.5]}, state="finished", tags=["mine"])
    api = wandb.Api(timeout=10)
    if listed:  # as the tracker lists runs
        (run,) = list(api.runs(project, per_page=100, lazy=False))
        return run
    run = api.run(f"{project}/r1")  # as the tracker looks one up
    run.load_full_data(force=True)
    return run


def test_history_keys(server, project) -> None:
    info = compat.history_keys(_public_run(server, project, listed=True))
    assert info["lastStep"] == 2 and "loss" in info["keys"]


def test_history_line_count(server, project) -> None:
    assert compat.history_line_count(_public_run(server, project, listed=False)) == 3


def test_set_run_tags(server, project) -> None:
    run = _public_run(server, project, listed=False)
    e, p = project.split("/")
    before = server.run(e, p, "r1")
    config, summary = dict(before.config), dict(before.summary)
    compat.set_run_tags(run, ["mine", "forecast:plateau"])
    after = server.run(e, p, "r1")
    assert after.tags == ["mine", "forecast:plateau"]
    assert after.config == config and after.summary == summary
