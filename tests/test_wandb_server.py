"""The loopback W&B test server answers the real wandb client (through wandb-core) and refuses the unknown."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

wandb = pytest.importorskip("wandb")

from wandb_server import WandbTestServer, server  # noqa: E402,F401 - server is a fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_online_run_round_trip(server: WandbTestServer) -> None:
    run = wandb.init(entity="ent", project="roundtrip", id="src1", config={"lr": 0.1, "warmup": 5},
                     job_type="train", mode="online")
    for i in range(30):
        run.log({"loss": 2.0 / (i + 1)}, step=i)
    run.finish()

    stored = server.run("ent", "roundtrip", "src1")
    assert stored is not None and stored.state == "finished"
    assert stored.user_config() == {"lr": 0.1, "warmup": 5}
    steps, values = stored.metric("loss")
    assert steps == list(range(30)) and values[-1] == pytest.approx(2.0 / 30)
    assert "file_stream" in server.operations and "UpsertBucket" in server.operations

    api = wandb.Api()
    (listed,) = list(api.runs("ent/roundtrip"))
    assert listed.id == "src1" and listed.config == {"lr": 0.1, "warmup": 5}
    rows = list(listed.scan_history(keys=["loss"], min_step=10, page_size=7))
    assert [r["_step"] for r in rows] == list(range(10, 30))
    listed.summary.update({"forecast/final": 0.5})
    assert server.run("ent", "roundtrip", "src1").summary["forecast/final"] == 0.5
    assert server.run("ent", "roundtrip", "src1").summary["loss"] == pytest.approx(2.0 / 30)
    listed.delete()
    assert server.run("ent", "roundtrip", "src1") is None


def test_unknown_operation_is_refused_loudly(server: WandbTestServer) -> None:
    req = urllib.request.Request(
        server.url + "/graphql", method="POST",
        data=json.dumps({"query": "query Mystery { viewer { id } }"}).encode(),
        headers={"Authorization": "Bearer " + os.environ["WANDB_API_KEY"],
                 "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
    assert server.unknown == ["operation Mystery"]
    server.unknown.clear()

    # A known operation selecting a field the server does not model is caught by validation.
    req.data = json.dumps({"query": "query Viewer { viewer { id secretField } }"}).encode()
    body = json.loads(urllib.request.urlopen(req, timeout=5).read())
    assert body["errors"] and "secretField" in body["errors"][0]["message"]
    assert len(server.unknown) == 1
    server.unknown.clear()


def test_rate_limit_is_retried_by_the_client(server: WandbTestServer) -> None:
    server.add_run("ent", "limited", "r1", metrics={"loss": [3.0, 2.0]})
    server.fail("Runs", status=429, times=2, retry_after=1)
    before = server.count("Runs")
    runs = list(wandb.Api().runs("ent/limited"))
    assert [r.id for r in runs] == ["r1"]
    assert server.count("Runs") - before == 3  # two refusals, then the answer
