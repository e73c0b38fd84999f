"""MLflow sync at scale: 200 running runs x 5,000 logged points against a local `mlflow server`.

Seeds a SQLite store (once; reused on later calls) with runs logged like HF Trainer (``loss`` and
``learning_rate`` every step, TrainingArguments params), starts a real `mlflow server` on it, then
times (1) the first sync, split into listing, reading histories, fitting and writing, (2) a no-op
sync (nothing changed), (3) the sync after 10 runs logged 100 more steps. The baseline for the
read share is the fit itself, measured in the same process.

    .venv/bin/python benchmarks/sync_mlflow.py                # 200 x 5,000 (seeding takes minutes once)
    .venv/bin/python benchmarks/sync_mlflow.py --runs 20 --points 1000 --store /tmp/small
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the session's server starter and HF-style curves

from conftest import start_mlflow_server  # noqa: E402
from mlflow_runs import cosine_lr, synthetic_loss  # noqa: E402

EXPERIMENT = "bench-sync"


def seed(store: Path, runs: int, points: int, total: int) -> None:
    """Log `runs` RUNNING runs with `points` steps each (loss + learning_rate per step) into SQLite."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    store.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    # artifacts go through the server started later (its --artifacts-destination)
    exp = client.create_experiment(EXPERIMENT, artifact_location="mlflow-artifacts:/bench")
    steps = np.arange(1, points + 1)
    t0 = 1_700_000_000_000
    started = time.perf_counter()
    for i in range(runs):
        peak = float(np.exp(np.random.default_rng(i).uniform(np.log(1e-4), np.log(1e-3))))
        lr = cosine_lr(steps, peak, 200, total)
        loss = synthetic_loss(steps, lr, scale=1.0 + 0.002 * i, seed=i, noise=0.01)
        rid = client.create_run(exp, run_name=f"run-{i:03d}").info.run_id
        ms = [Metric("loss", float(v), t0 + int(s), int(s)) for s, v in zip(steps, loss)]
        ms += [Metric("learning_rate", float(v), t0 + int(s), int(s)) for s, v in zip(steps, lr)]
        params = {"learning_rate": peak, "lr_scheduler_type": "cosine", "warmup_steps": 200, "max_steps": total,
                  "per_device_train_batch_size": 32}
        client.log_batch(rid, metrics=ms, params=[Param(k, str(v)) for k, v in params.items()])
        if i % 20 == 19:
            print(f"  seeded {i + 1}/{runs} runs ({time.perf_counter() - started:.0f}s)", flush=True)
    (store / "seeded.json").write_text(json.dumps({"runs": runs, "points": points, "total": total}))


def timed_sync(uri: str, filter_: str | None = None, **settings) -> tuple[object, float]:
    from forecaster import trackers
    from forecaster.sync import SyncSettings, sync

    t = trackers.load("mlflow")(uri=uri, experiments=[EXPERIMENT], filter=filter_)
    start = time.perf_counter()
    with t:
        rep = sync(t, SyncSettings(**settings), progress=False)
    return rep, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--total", type=int, default=10000, help="planned last step of every run")
    ap.add_argument("--store", type=Path, default=Path("/tmp/forecaster-bench-mlflow"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--law", default="auto")
    ap.add_argument("--filter", default=None, help="sync only matching runs, e.g. \"attributes.run_name LIKE 'run-0%%'\"")
    args = ap.parse_args()
    meta = {"runs": args.runs, "points": args.points, "total": args.total}
    marker = args.store / "seeded.json"
    if not marker.exists() or json.loads(marker.read_text()) != meta:
        if args.store.exists():
            import shutil

            shutil.rmtree(args.store)
        print(f"seeding {args.runs} runs x {args.points} points into {args.store} ...", flush=True)
        seed(args.store, args.runs, args.points, args.total)
    # work on a copy so every benchmark starts from the same unsynced store
    work = args.store.parent / (args.store.name + "-work")
    import shutil

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.store, work)
    srv = start_mlflow_server(work)  # reuses work/mlflow.db
    out = {"runs": args.runs, "points": args.points, "filter": args.filter, "law": args.law,
           "cpu_count": os.cpu_count()}
    try:
        rep, wall = timed_sync(srv.uri, args.filter, device=args.device, law=args.law)
        n = len(rep.outcomes)
        out["synced_runs"] = n
        assert len(rep.by("forecast")) == n, rep.summary()
        t = rep.timings
        out["first"] = {"wall_s": round(wall, 2), **{k: round(v, 2) for k, v in t.items()},
                        "read_share": round(t["read"] / t["total"], 3), "fit_share": round(t["fit"] / t["total"], 3),
                        "write_share": round(t["write"] / t["total"], 3), "writes": rep.writes}
        rep, wall = timed_sync(srv.uri, args.filter, device=args.device, law=args.law)
        assert rep.writes == 0 and len(rep.by("unchanged")) == n, rep.summary()
        out["noop"] = {"wall_s": round(wall, 3), "list_s": round(rep.timings["list"], 3), "writes": rep.writes}
        # 10 runs train on for 100 steps: only their group is read again and only they are rewritten
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(srv.uri)
        src = [r for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                             args.filter or "", max_results=1000)
               if r.data.tags.get("forecast.kind") != "forecast"][:10]
        for r in src:
            s0 = max(m.step for m in r.data._metric_objs) + 1
            client.log_batch(r.info.run_id, metrics=[Metric("loss", 3.0, 1_800_000_000_000 + s, s)
                                                     for s in range(s0, s0 + 100)])
        rep, wall = timed_sync(srv.uri, args.filter, device=args.device, law=args.law)
        out["incremental_10_runs"] = {"wall_s": round(wall, 2), **{k: round(v, 2) for k, v in rep.timings.items()},
                                      "forecast": len(rep.by("forecast")), "writes": rep.writes}
    finally:
        srv.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
