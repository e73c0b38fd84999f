"""Against the real W&B service: runs only when WANDB_API_KEY is set (never in CI by default).

It logs a small run to ``$FORECAST_WANDB_TEST_PROJECT`` (ENTITY/PROJECT; default
``<your entity>/forecaster-test``), forecasts it through the adapter, checks the companion run,
and deletes both runs again.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not os.environ.get("WANDB_API_KEY"),
                                reason="needs WANDB_API_KEY (talks to the real W&B service)")

wandb = pytest.importorskip("wandb")


def test_companion_round_trip_on_real_wandb() -> None:
    from forecaster.histories import RunForecast
    from forecaster.trackers import ForecastRevision
    from forecaster_wandb import WandbTracker

    scope = os.environ.get("FORECAST_WANDB_TEST_PROJECT")
    if not scope:
        scope = f"{wandb.Api().default_entity}/forecaster-test"
    entity, project = scope.split("/")
    rid = "fc-test-" + uuid.uuid4().hex[:8]
    run = wandb.init(entity=entity, project=project, id=rid, config={"learning_rate": 1e-3,
                     "lr_scheduler_type": "linear", "max_steps": 200}, reinit="create_new",
                     settings=wandb.Settings(console="off", silent=True))
    for s in range(0, 100, 5):
        run.log({"loss": 3.0 / (1 + s) ** 0.3}, step=s)
    run.finish()
    cid = None
    try:
        with WandbTracker(experiments=[scope], cache_dir="") as tr:
            info = next(r for r in tr.list_runs() if r.id == rid)
            ((_, hist),) = list(tr.read_histories([info], ["loss"]))
            assert np.array_equal(hist["loss"].steps, np.arange(0, 100, 5))
            steps = np.arange(100, 201, 20)
            p50 = np.linspace(0.8, 0.7, len(steps))
            fc = RunForecast(rid, "", steps, np.zeros(len(steps)), p50, p50 - 0.05, p50 + 0.05, law="test")
            cid = tr.create_forecast(ForecastRevision(source=info, input="real-1", curves={"loss": fc}))
            tr.set_tags(info, {"forecast.run_id": cid, "forecast.final": "0.7"})
        api = wandb.Api()
        comp = api.run(f"{scope}/{cid}")
        assert comp.job_type == "forecast" and comp.state == "finished"
        rows = list(comp.scan_history(keys=["loss"]))
        assert [r["_step"] for r in rows] == steps.tolist()
        assert api.run(f"{scope}/{rid}").summary["forecast"]["run_id"] == cid
    finally:
        api = wandb.Api()
        for name in filter(None, (cid, rid)):
            try:
                api.run(f"{scope}/{name}").delete()
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass
