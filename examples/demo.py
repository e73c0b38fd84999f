"""`make demo`: real curves logged to an embedded MLflow store, forecast by `forecast sync`, shown in `mlflow ui`.

No server is needed: the store is a SQLite file (``.forecast-demo/mlflow.db``). The runs are
logged the way Hugging Face's Trainer logs them (metrics ``loss`` and ``learning_rate``,
TrainingArguments as params); some finished, some cut short and left RUNNING. Then the real
command line runs twice: the first sync writes a forecast run beside each running run, the second
finds nothing new and writes nothing. Finally it prints the command that opens the MLflow UI.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
EXPERIMENT = "demo-luo100m"

# (run name, csv file, HF TrainingArguments, last step logged or None for all, status, extra tags)
RUNS = [
    ("cosine-24k", "luo100m_cosine_24000.csv",
     {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": json.dumps({"min_lr": 3e-5}),
      "max_steps": 24000}, None, "FINISHED", {}),
    ("constant-24k", "luo100m_constant_24000.csv",
     {"lr_scheduler_type": "constant_with_warmup", "max_steps": 24000}, None, "FINISHED", {}),
    ("cosine-72k", "luo100m_cosine_72000.csv",
     {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": json.dumps({"min_lr": 3e-5}),
      "max_steps": 72000}, 30000, "RUNNING", {}),
    # HF has no exponential decay: the user states the schedule as a spec in a forecast.schedule tag
    ("wsd-exp-24k", "luo100m_wsd_20000_24000.csv",
     {"lr_scheduler_type": "constant_with_warmup", "max_steps": 24000}, 21000, "RUNNING",
     {"forecast.schedule": "wsd(peak=3e-4, warmup=2160, total=24000, decay=0.16666666666666666, "
                           "shape=exp, final=3e-5)"}),
    ("wsd-linear-24k", "luo100m_wsdld_20000_24000.csv",
     {"lr_scheduler_type": "warmup_stable_decay",
      "lr_scheduler_kwargs": json.dumps({"num_decay_steps": 4000, "decay_type": "linear", "min_lr_ratio": 0.1}),
      "max_steps": 24000}, 16000, "RUNNING", {}),
]
COMMON = {"learning_rate": 3e-4, "warmup_steps": 2160, "per_device_train_batch_size": 64,
          "gradient_accumulation_steps": 1, "weight_decay": 0.1, "adam_beta2": 0.95, "seed": 42,
          "output_dir": "out/llama-100m", "num_parameters": 100_000_000}


def read_curve(path: Path) -> tuple[list[int], list[float], list[float]]:
    steps, lrs, losses = [], [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            lrs.append(float(row["lr"]))
            losses.append(float(row["loss"]))
    return steps, lrs, losses


def seed_store(store: Path) -> str:
    """A fresh SQLite MLflow store with the example runs; returns its tracking URI."""
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    seed(uri, artifact_location=(store / "artifacts").as_uri())
    return uri


def seed(uri: str, experiment: str = EXPERIMENT, artifact_location: str | None = None) -> str:
    """Log the example runs into a new experiment at `uri` (a store or a server); returns its id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(experiment, artifact_location=artifact_location)
    now = int(time.time() * 1000)
    for name, file, args, upto, status, tags in RUNS:
        steps, lrs, losses = read_curve(DATA / file)
        keep = [i for i, s in enumerate(steps) if upto is None or s <= upto]
        # timestamps spaced as if 24k steps took 12 hours, ending about now for the running runs
        t0 = now - int(keep and steps[keep[-1]] * 1800) - 60_000
        run = client.create_run(exp, run_name=name, start_time=t0,
                                tags={"mlflow.source.name": "examples/demo.py", **tags})
        rid = run.info.run_id
        metrics = []
        for i in keep:
            ts = t0 + steps[i] * 1800
            metrics.append(Metric("loss", losses[i], ts, steps[i]))
            metrics.append(Metric("learning_rate", lrs[i], ts, steps[i]))
        params = [Param(k, str(v)) for k, v in {**COMMON, **args}.items()]
        client.log_batch(rid, metrics=metrics, params=params, tags=[RunTag("source_csv", file)])
        if status != "RUNNING":
            client.set_terminated(rid, status, end_time=t0 + steps[keep[-1]] * 1800)
    return exp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / ".forecast-demo", help="where the demo store lives")
    args = ap.parse_args()
    store = args.store.resolve()
    print(f"1/3 seeding an embedded MLflow store at {store} with {len(RUNS)} runs "
          f"({sum(r[4] == 'RUNNING' for r in RUNS)} still running) from examples/data ...", flush=True)
    uri = seed_store(store)
    sync_cmd = [sys.executable, "-m", "forecaster.cli", "sync", "--tracker", "mlflow", "--tracking-uri", uri,
                "--experiment", EXPERIMENT, "--lock-file", str(store / "sync.lock")]
    print("2/3 forecast sync (first run: fits and writes the forecasts) ...\n    "
          + " ".join(["forecast", *sync_cmd[3:]]), flush=True)
    first = subprocess.run(sync_cmd, cwd=ROOT)
    if first.returncode != 0:
        return first.returncode
    print("3/3 forecast sync again (nothing changed: one search, no writes) ...", flush=True)
    second = subprocess.run(sync_cmd + ["--quiet"], cwd=ROOT)
    if second.returncode != 0:
        return second.returncode
    exp_id = _show(uri)
    from mlflow.tracking import MlflowClient

    from forecaster_mlflow import VIEW_TAG, chart_view_path

    band = VIEW_TAG in MlflowClient(uri).get_experiment(exp_id).tags

    print("\nOpen the MLflow UI on this store:\n\n"
          f"    {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri {uri} --port 5000\n\n"
          "then this page: each running run's loss with its forecast continuing it, in the run's colour,\n"
          "and the forecast's p10-p90 band (dashed and dotted)\n\n"
          f"    http://127.0.0.1:5000/{chart_view_path(exp_id, band=band)}\n")
    return 0


def _show(uri: str) -> str:
    """Print the forecast.* tags the sync wrote on each source run; return the experiment's id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    truth = {name: read_curve(DATA / file) for name, file, *_ in RUNS}
    print(f"\n{'run':16} {'status':9} {'observed to':>11} {'forecast final loss (p10-p90)':>32} {'actual':>7}")
    for r in sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.run_name):
        t = r.data.tags
        if t.get("forecast.kind") == "forecast":
            continue
        steps, _, losses = truth[r.info.run_name]
        last = max(m.step for m in r.data._metric_objs)
        if t.get("forecast.status") == "ok":
            fc = f"{float(t['forecast.final']):.3f} ({float(t['forecast.final_p10']):.3f}-{float(t['forecast.final_p90']):.3f})"
        else:
            fc = t.get("forecast.skipped", "-")[:32]
        print(f"{r.info.run_name:16} {r.info.status:9} {last:>11} {fc:>32} {losses[-1]:>7.3f}")
    return exp.experiment_id


if __name__ == "__main__":
    sys.exit(main())
