"""One harness per tracker adapter for the conformance tests: seed runs the tracker's own way, look
at what a sync left, and build the adapter over a fresh scope (experiment, project or folder).

Each harness logs runs like HF Trainer (loss at every 20th step, TrainingArguments in the config)
through the tracker's own client or store, never through the adapter under test.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.trackers import FAILED, FINISHED, RUNNING, Tracker
from mlflow_runs import cosine_lr, synthetic_loss

TOTAL = 1000
HF = {"learning_rate": 3e-4, "lr_scheduler_type": "cosine", "warmup_steps": 100, "max_steps": TOTAL}


def hf_loss(upto: int, seed: int, start: int = 0) -> tuple[list[int], list[float]]:
    """Steps and loss of an HF-like run up to `upto` (only the steps after `start`)."""
    steps = np.arange(20, upto + 1, 20)
    loss = synthetic_loss(steps, cosine_lr(steps, 3e-4, 100, TOTAL), seed=seed)
    keep = steps > start
    return steps[keep].tolist(), loss[keep].tolist()


class Harness:
    """What a conformance test needs of one adapter; a harness that cannot do something skips."""

    name = ""
    live_status = RUNNING  # how a run still training is listed
    can_grow = can_delete = can_leave_partial = True

    def tracker(self) -> Tracker:
        raise NotImplementedError

    def log_run(self, name: str, upto: int, seed: int = 0, status: str = RUNNING,
                config: dict[str, Any] | None = HF) -> str:
        raise NotImplementedError

    def log_more(self, run_id: str, upto: int, start: int, seed: int = 0) -> None:
        raise NotImplementedError

    def delete_run(self, run_id: str) -> None:
        raise NotImplementedError

    def leave_partial(self, source_id: str) -> None:
        """A forecast run of `source_id` as a write killed halfway leaves it."""
        raise NotImplementedError

    def state(self, run_id: str) -> Any:
        """Everything of a user's run that the adapter must never change (its history, config, status)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self) -> None:
        from forecaster.trackers.memory import MemoryStore

        self.store = MemoryStore()

    def tracker(self) -> Tracker:
        from forecaster.trackers.memory import MemoryTracker

        return MemoryTracker(experiments=["exp"], store=self.store)

    def log_run(self, name, upto, seed=0, status=RUNNING, config=HF):
        steps, loss = hf_loss(upto, seed)
        return self.store.log_run("exp", name, {"loss": (steps, loss)}, config=config, status=status)

    def log_more(self, run_id, upto, start, seed=0):
        self.store.log(run_id, "loss", *hf_loss(upto, seed, start))

    def delete_run(self, run_id):
        self.store.delete(run_id)

    def leave_partial(self, source_id):
        from forecaster.trackers.memory import MemoryRun

        fid = self.store.new_id("forecast")
        self.store.runs[fid] = MemoryRun(fid, "cut short", "exp", source=source_id, complete=False)

    def state(self, run_id):
        r = self.store.runs[run_id]
        return r.status, dict(r.config), {k: list(v) for k, v in r.metrics.items()}


class MlflowHarness(Harness):
    name = "mlflow"
    _STATUS = {RUNNING: "RUNNING", FINISHED: "FINISHED", FAILED: "FAILED"}

    def __init__(self, server: Any) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = server.uri
        self.client = MlflowClient(server.uri)
        self.exp_name = f"conformance-{uuid.uuid4().hex[:8]}"
        self.exp = self.client.create_experiment(self.exp_name)

    def tracker(self) -> Tracker:
        from forecaster_mlflow import MlflowTracker

        return MlflowTracker(uri=self.uri, experiments=[self.exp_name])

    def _log(self, run_id: str, steps: list[int], loss: list[float]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(run_id, metrics=[Metric("loss", v, 1_700_000_000_000 + s, s) for s, v in zip(steps, loss)])

    def log_run(self, name, upto, seed=0, status=RUNNING, config=HF):
        from mlflow.entities import Param

        rid = self.client.create_run(self.exp, run_name=name).info.run_id
        self._log(rid, *hf_loss(upto, seed))
        self.client.log_batch(rid, params=[Param(k, str(v)) for k, v in (config or {}).items()])
        if status != RUNNING:
            self.client.set_terminated(rid, self._STATUS[status])
        return rid

    def log_more(self, run_id, upto, start, seed=0):
        self._log(run_id, *hf_loss(upto, seed, start))

    def delete_run(self, run_id):
        self.client.delete_run(run_id)

    def leave_partial(self, source_id):
        self.client.create_run(self.exp, run_name="cut short",
                               tags={"forecast.kind": "forecast", "forecast.source_run": source_id})

    def state(self, run_id):
        run = self.client.get_run(run_id)
        hist = [(m.step, m.value, m.timestamp) for m in self.client.get_metric_history(run_id, "loss")]
        return run.info.status, run.info.end_time, dict(run.data.params), hist


class WandbOnlineHarness(Harness):
    name = "wandb-online"
    _STATE = {RUNNING: "running", FINISHED: "finished", FAILED: "crashed"}

    def __init__(self, server: Any, tmp_path: Path) -> None:
        self.server = server
        self.entity, self.project = "ent", f"c{uuid.uuid4().hex[:8]}"
        self.tmp = tmp_path

    def tracker(self) -> Tracker:
        from forecaster_wandb import WandbTracker

        return WandbTracker(experiments=[f"{self.entity}/{self.project}"], cache_dir=str(self.tmp / "cache"))

    def log_run(self, name, upto, seed=0, status=RUNNING, config=HF):
        steps, loss = hf_loss(upto, seed)
        self.server.add_run(self.entity, self.project, name, metrics={"loss": loss}, steps=steps,
                            config=config, state=self._STATE[status])
        return name

    def log_more(self, run_id, upto, start, seed=0):
        run = self.server.run(self.entity, self.project, run_id)
        for s, v in zip(*hf_loss(upto, seed, start)):
            run.history.append({"_step": s, "_runtime": float(s), "_timestamp": run.created_at + s, "loss": v})
        run.summary.update(run.history[-1])

    def delete_run(self, run_id):
        self.server.delete_run(self.entity, self.project, run_id)

    def leave_partial(self, source_id):
        self.server.add_run(self.entity, self.project, f"{source_id}-cut", metrics={}, state="running",
                            config={"forecast": {"kind": "forecast", "source": source_id}}, job_type="forecast",
                            group=f"forecast:{source_id}")

    def state(self, run_id):
        run = self.server.run(self.entity, self.project, run_id)
        return [dict(r) for r in run.history], dict(run.config), run.state


class WandbOfflineHarness(Harness):
    """Offline run folders; runs cannot grow here, and companions are only ever moved in complete."""

    name = "wandb-offline"
    live_status = FAILED  # an offline run that did not end cleanly reads as failed
    can_grow = can_delete = can_leave_partial = False
    _ids = itertools.count()

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "job"
        self.root.mkdir()

    def tracker(self) -> Tracker:
        from forecaster_wandb import WandbTracker

        return WandbTracker(wandb_dir=str(self.root))

    def log_run(self, name, upto, seed=0, status=RUNNING, config=HF):
        import wandb

        rid = f"{name}{next(self._ids)}"
        run = wandb.init(mode="offline", dir=str(self.root), project="offp", entity="ent", id=rid, name=name,
                         config=config or {}, reinit="create_new",
                         settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
        for s, v in zip(*hf_loss(upto, seed)):
            run.log({"loss": v}, step=s)
        run.finish(exit_code=0 if status == FINISHED else 1)
        wandb.teardown()
        return rid

    def state(self, run_id):
        from wandb_server import file_digests

        (d,) = [p for p in (self.root / "wandb").iterdir() if p.name.endswith(run_id)]
        return file_digests(d)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
