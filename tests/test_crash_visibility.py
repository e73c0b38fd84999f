"""kill -9 at each point of a first sync and of a revision, then look as the MLflow UI looks.

The sync runs as its own process against a real `mlflow server`; a small wrapper kills it with
SIGKILL right after the n-th call of one MLflow client method that writes a forecast. The UI draws
the active runs (the search below) that hold the metric; every forecast it would draw must be
complete, and the next sync must leave exactly one forecast per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import add_points, log_hf_run  # noqa: E402

TOTAL = 1000

# SIGKILL right after the n-th matching call returns; only the forecast writes are counted
_WRAPPER = textwrap.dedent('''
    import os, signal, sys
    from mlflow.tracking import MlflowClient
    method, nth = os.environ.get("CRASH_AFTER", "delete_run:0").split(":")
    wanted = {
        "create_run": lambda kw, a: str(kw.get("run_name", "")).endswith(" forecast"),
        "log_batch": lambda kw, a: bool(kw.get("metrics")),
        "log_artifact": lambda kw, a: True,
        "delete_run": lambda kw, a: True,
        "set_terminated": lambda kw, a: True,
    }[method]
    real = getattr(MlflowClient, method)
    seen = [0]
    def patched(self, *a, **kw):
        out = real(self, *a, **kw)
        if wanted(kw, a):
            seen[0] += 1
            if seen[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(MlflowClient, method, patched)
    from forecaster.cli import main
    sys.argv[0] = "forecast"
    main()
''')


def _sync(uri: str, exp: str, lock: str, crash_after: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CRASH_AFTER"}
    if crash_after:
        env["CRASH_AFTER"] = crash_after
    return subprocess.run([sys.executable, "-c", _WRAPPER, "sync", "--tracking-uri", uri, "--experiment", exp,
                           "--law", "multipower", "--lock-file", lock, "--workers", "1"],
                          env=env, capture_output=True, text=True, timeout=300)


def _drawn(client: MlflowClient, exp_id: str) -> dict[str, list]:
    """Per source run, the forecast runs the UI would draw in its loss chart."""
    out: dict[str, list] = {}
    for r in client.search_runs([exp_id], "", run_view_type=ViewType.ACTIVE_ONLY, max_results=1000):
        tags = r.data.tags
        if tags.get("forecast.kind") == "forecast" and "loss" in r.data.metrics:
            out.setdefault(tags["forecast.source_run"], []).append(r)
    return out


def _complete(client: MlflowClient, run) -> bool:
    """Every series holds the same steps and runs to the planned end."""
    steps = [tuple(m.step for m in client.get_metric_history(run.info.run_id, k))
             for k in ("loss", "loss.p10", "loss.p90")]
    return len(set(steps)) == 1 and steps[0] and max(steps[0]) == TOTAL


@pytest.mark.parametrize("phase,crash_after", [
    ("first", "create_run:1"), ("first", "log_batch:1"),
    ("revision", "create_run:1"), ("revision", "log_batch:1"), ("revision", "delete_run:1"),
])
def test_kill_9_never_leaves_a_half_written_forecast_in_view(mlflow_server, tmp_path, phase, crash_after) -> None:
    client = MlflowClient(mlflow_server.uri)
    name = f"crash-{phase}-{crash_after.replace(':', '-')}"
    exp = client.create_experiment(name)
    ids = [log_hf_run(client, exp, f"r{i}", total=TOTAL, upto=300 + 100 * i, seed=40 + i, status="RUNNING")
           for i in range(2)]
    log_hf_run(client, exp, "done", total=TOTAL, seed=39)
    lock = str(tmp_path / "lock")
    if phase == "revision":
        assert _sync(mlflow_server.uri, name, lock).returncode == 0
        before = {src: [r.info.run_id for r in runs] for src, runs in _drawn(client, exp).items()}
        assert all(len(v) == 1 for v in before.values()) and set(before) == set(ids)
        for i, rid in enumerate(ids):
            add_points(client, rid, 320 + 100 * i, 400 + 100 * i, total=TOTAL, seed=40 + i)

    killed = _sync(mlflow_server.uri, name, lock, crash_after)
    assert killed.returncode == -9, killed.stderr[-2000:]

    drawn = _drawn(client, exp)
    for src, runs in drawn.items():
        assert all(_complete(client, r) for r in runs), (src, crash_after)
        # the new forecast is drawn, then the old one deleted: both are drawn for one call only
        assert len(runs) <= (2 if (phase, crash_after) == ("revision", "log_batch:1") else 1)
    if phase == "revision":  # the previous forecast stays until a complete new one is in place
        assert set(drawn) == set(ids)

    healed = _sync(mlflow_server.uri, name, lock)
    assert healed.returncode == 0, healed.stderr[-2000:]
    drawn = _drawn(client, exp)
    assert set(drawn) == set(ids)
    everything = client.search_runs([exp], "tags.`forecast.kind` = 'forecast'", run_view_type=ViewType.ACTIVE_ONLY)
    assert len(everything) == len(ids)  # nothing incomplete left behind either
    for rid in ids:
        (fc,) = drawn[rid]
        assert _complete(client, fc) and fc.info.status == "FINISHED"
        assert client.get_run(rid).data.tags["forecast.run_id"] == fc.info.run_id
        assert client.get_run(rid).info.status == "RUNNING"
