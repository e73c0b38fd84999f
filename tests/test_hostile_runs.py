"""One bad run never stops or drags the sync: hostile histories against a real `mlflow server`.

Each experiment holds healthy runs plus runs drawn by a seeded generator from the ways real runs
go wrong (infinities, NaN, stray steps, a summed loss, absurd configs). Its reference twin holds the
same healthy runs and, of the hostile runs, only those whose damage is repairable, repaired (a stray
point removed): they are still good siblings. The sync must exit 0 with no traceback and forecast
the healthy runs as it does in the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow_runs import HOSTILE_KINDS, REPAIRABLE, cosine_lr, log_hf_run, log_hostile_run, synthetic_loss  # noqa: E402

from forecaster import screen  # noqa: E402
from forecaster.cli import main  # noqa: E402
from forecaster.histories import RunHistory  # noqa: E402

LAW = "multipower"
HEALTHY = [("done_a", 1, 1000, "FINISHED"), ("done_b", 2, 1000, "FINISHED"), ("done_c", 3, 1000, "FINISHED"),
           ("live_a", 4, 400, "RUNNING"), ("live_b", 5, 600, "RUNNING")]


def _healthy(client: MlflowClient, exp: str) -> dict[str, str]:
    return {name: log_hf_run(client, exp, name, seed=seed, upto=upto, status=status)
            for name, seed, upto, status in HEALTHY}


def _sync(uri: str, exp_name: str):
    result = CliRunner().invoke(main, ["sync", "--tracking-uri", uri, "--experiment", exp_name, "--law", LAW,
                                       "--no-plots"])
    return result


def _finals(client: MlflowClient, ids: dict[str, str]) -> dict[str, float]:
    out = {}
    for name, rid in ids.items():
        tags = client.get_run(rid).data.tags
        if "forecast.final" in tags:
            out[name] = float(tags["forecast.final"])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hostile_runs_never_stop_or_move_the_healthy_forecasts(mlflow_server, seed) -> None:
    client = MlflowClient(mlflow_server.uri)
    kinds = [str(k) for k in np.random.default_rng(seed).choice(HOSTILE_KINDS, size=4, replace=False)]
    finals = {}
    for variant in ("reference", "hostile"):
        rng = np.random.default_rng(seed + 1000)
        name = f"{variant}-{seed}"
        exp = client.create_experiment(name)
        ids = _healthy(client, exp)
        bad = {kind: log_hostile_run(client, exp, kind, rng, repaired=variant == "reference") for kind in kinds}
        ids.update({k: rid for k, rid in bad.items() if rid is not None and k in REPAIRABLE})

        result = _sync(mlflow_server.uri, name)

        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        finals[variant] = _finals(client, ids)
    reference = finals["reference"]
    assert finals["hostile"].keys() == reference.keys()
    assert {"live_a", "live_b"} <= reference.keys()
    for run, value in finals["hostile"].items():
        assert value == pytest.approx(reference[run], rel=1e-3), (kinds, run)
    # every hostile run is accounted for: forecast alone, or skipped with a reason in its tags
    for kind, rid in bad.items():
        tags = client.get_run(rid).data.tags
        assert tags.get("forecast.status") in ("ok", "skipped"), (kind, tags)
        if kind in ("inf_tail", "mixed_inf"):
            assert tags["forecast.status"] == "skipped" and "diverged" in tags["forecast.skipped"]
            assert tags["forecast.alert.divergence"].startswith("nonfinite")
        if kind in ("summed", "perplexity") and tags["forecast.status"] == "ok":
            assert "not pooled" in tags["forecast.notes"], kind
        if kind in ("nan_middle", "stray_step", "stray_lr_step"):
            assert "dropped" in tags.get("forecast.notes", ""), (kind, tags)


# -- the screening rules themselves -----------------------------------------------------------
def test_screen_points_counts_what_it_drops_and_finds_a_divergence() -> None:
    steps = np.array([-5, 10, 20, 30, 40, 10**12])
    values = np.array([3.0, 2.9, np.nan, 2.7, 1.797e308, 2.5])
    pts = screen.screen_points(steps, values, planned_end=100)
    assert pts.steps.tolist() == [10, 30]
    assert pts.dropped == {"stray steps": 2, "non-finite": 2}
    assert pts.nonfinite_steps == [20, 40]
    assert pts.diverged_at == 40
    ok = screen.screen_points(np.array([10, 20, 30]), np.array([3.0, np.inf, 2.8]), planned_end=100)
    assert ok.diverged_at is None and ok.dropped == {"non-finite": 1}


def test_steps_within_the_plan_are_never_stray() -> None:
    steps = np.array([1, 2, 4, 8, 100_000])
    assert screen.screen_points(steps, np.ones(5), planned_end=100_000).dropped == {}


def _run(name: str, scale: float, upto: int = 1000, group: str = "g") -> RunHistory:
    steps = np.arange(20, upto + 1, 20)
    loss = synthetic_loss(steps, cosine_lr(steps, 3e-4, 100, 1000), seed=len(name))
    return RunHistory(name, steps, loss * scale, group=group)


def test_level_outliers_out_votes_one_run_and_splits_a_disagreeing_pair() -> None:
    runs = [_run("a", 1.0), _run("b", 1.1), _run("c", 0.95, upto=300), _run("d", 1000.0, upto=500)]
    out = screen.level_outliers(runs)
    assert list(out) == [3] and out[3] == pytest.approx(1000, rel=0.2)
    pair = screen.level_outliers([_run("a", 1.0), _run("e", 1 / 8, upto=400)])
    assert sorted(pair) == [0, 1]
    # siblings that differ as sizes or learning rates do are pooled
    assert screen.level_outliers([_run("a", 1.0), _run("b", 1.6), _run("c", 0.7)]) == {}
    # runs of different groups are never compared
    assert screen.level_outliers([_run("a", 1.0, group="x"), _run("b", 100.0, group="y")]) == {}
