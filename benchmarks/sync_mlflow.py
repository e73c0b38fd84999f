"""MLflow sync at scale: N running runs x P logged points x 2 keys against a local `mlflow server`.

Seeds a SQLite store (once; reused on later calls) with runs logged like HF Trainer (``loss`` and
``learning_rate`` every step, TrainingArguments params), starts a real `mlflow server` on a copy of
it, then times, in this one process:

1. the bare full-history read: `MlflowClient.get_metric_history` of both keys of every run from 8
   threads, what any exporter pays (the baseline the sync is measured against);
2. the first `forecast sync` (history cache on, in a fresh state folder), split into list / read /
   fit / write;
3. a no-op sync (nothing logged since);
4. the incremental sync after 10 % of the runs logged `--new-steps` more steps of both keys.

Each phase also reports its peak resident memory (the process's high-water mark, reset before it),
the CPU seconds of this process and of the server's process group (wall time on a shared machine
moves with its load; CPU far less), and, with $FORECASTER_PROFILE set, the fit's phases
(`forecaster/phases.py`; $FORECASTER_PROFILE_CLOCK=cpu for CPU seconds).

    .venv/bin/python benchmarks/sync_mlflow.py --runs 300 --points 3000 --total 6000
    .venv/bin/python benchmarks/sync_mlflow.py --runs 20 --points 1000 --store /tmp/small
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the session's server starter and HF-style curves

from conftest import start_mlflow_server  # noqa: E402
from mlflow_runs import cosine_lr, synthetic_loss  # noqa: E402

EXPERIMENT = "bench-sync"


def seed(store: Path, runs: int, points: int, total: int) -> None:
    """Log `runs` RUNNING runs with `points` steps each (loss + learning_rate per step) into SQLite.

    Runs and params go through `MlflowClient`; the metric rows are inserted into MLflow's own
    `metrics` and `latest_metrics` tables with sqlite3, the rows `log_batch` would write (its
    ORM path took 9 minutes for 300 x 3,000 points and would take an hour for 1,000 x 5,000).
    """
    import sqlite3

    from mlflow.entities import Param
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
        params = {"learning_rate": peak, "lr_scheduler_type": "cosine", "warmup_steps": 200, "max_steps": total,
                  "per_device_train_batch_size": 32}
        client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        with sqlite3.connect(store / "mlflow.db") as db:
            for key, vals in (("loss", loss), ("learning_rate", lr)):
                db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                               "VALUES (?, ?, ?, ?, ?, 0)",
                               [(key, float(v), t0 + int(s), rid, int(s)) for s, v in zip(steps, vals)])
                db.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                           "VALUES (?, ?, ?, ?, 0, ?)", (key, float(vals[-1]), t0 + int(steps[-1]), int(steps[-1]), rid))
        if i % 20 == 19:
            print(f"  seeded {i + 1}/{runs} runs ({time.perf_counter() - started:.0f}s)", flush=True)
    (store / "seeded.json").write_text(json.dumps({"runs": runs, "points": points, "total": total}))


def peak_reset() -> None:
    """Reset the process's resident-memory high-water mark (Linux: clear_refs 5), so each phase has its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def bare_read(uri: str, run_ids: list[str], keys=("loss", "learning_rate"), threads: int = 8) -> int:
    """Every point of every key of every run, as a plain exporter reads them; the number of points."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)

    def one(rid: str) -> int:
        return sum(len(client.get_metric_history(rid, k)) for k in keys)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, run_ids))


def server_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every process in the server's process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[2]) == pgid:  # fields after the name: state ppid pgrp ... utime(12) stime(13)
            total += (int(f[11]) + int(f[12])) / tick
    return total


def timed_sync(uri: str, filter_: str | None = None, server_pgid: int | None = None,
               **settings) -> tuple[object, float, dict]:
    """One sync; its report, wall seconds, and CPU seconds (this process, the server, and the
    profiled phases of the fit when $FORECASTER_PROFILE is set)."""
    from forecaster import phases, trackers
    from forecaster.sync import SyncSettings, sync

    t = trackers.load("mlflow")(uri=uri, experiments=[EXPERIMENT], filter=filter_)
    phases.reset()
    srv0 = server_cpu(server_pgid) if server_pgid else 0.0
    cpu0 = time.process_time()
    start = time.perf_counter()
    with t:
        rep = sync(t, SyncSettings(**settings), progress=False)
    wall = time.perf_counter() - start
    cpu = {"cpu_s": round(time.process_time() - cpu0, 2)}
    if server_pgid:
        cpu["server_cpu_s"] = round(server_cpu(server_pgid) - srv0, 2)
    if phases.enabled():
        cpu["phases"] = {k: round(v, 2) for k, v in sorted(phases.totals().items(), key=lambda kv: -kv[1])}
    return rep, wall, cpu


def train_on(uri: str, run_ids: list[str], new_steps: int, total: int) -> None:
    """Runs log `new_steps` more steps of loss and learning_rate, continuing their seeded curves."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for rid in run_ids:
        run = client.get_run(rid)
        i = int(run.info.run_name.split("-")[1])
        last = int(max(m.step for m in run.data._metric_objs))
        peak = float(run.data.params["learning_rate"])
        steps = np.arange(1, last + new_steps + 1)
        lr = cosine_lr(steps, peak, 200, total)
        loss = synthetic_loss(steps, lr, scale=1.0 + 0.002 * i, seed=i, noise=0.01)
        tail = steps > last
        t0 = 1_800_000_000_000
        ms = [Metric("loss", float(v), t0 + int(s), int(s)) for s, v in zip(steps[tail], loss[tail])]
        ms += [Metric("learning_rate", float(v), t0 + int(s), int(s)) for s, v in zip(steps[tail], lr[tail])]
        client.log_batch(rid, metrics=ms)


def compare_reads(uri: str, n: int) -> dict:
    """Whole exact histories of `n` runs: the adapter's get_metric_history path against its bulk route."""
    from forecaster import trackers

    t = trackers.load("mlflow")(uri=uri, experiments=[EXPERIMENT])
    keys = ["loss", "learning_rate"]
    out = {}
    with t:
        runs = t.list_runs()[:n]
        for label, fn in (("get_metric_history", lambda: list(t.read_histories(runs, keys))),
                          ("bulk_route", lambda: list(t.read_since(runs, {r.id: {k: None for k in keys} for r in runs})))):
            start = time.perf_counter()
            got = fn()
            out[label] = {"wall_s": round(time.perf_counter() - start, 2),
                          "points": sum(len(v) for _, d in got for v in d.values())}
    return out


def phase(rep, wall: float, cpu: dict) -> dict:
    return {"wall_s": round(wall, 2), **{k: round(v, 2) for k, v in rep.timings.items()},
            "forecast": len(rep.by("forecast")), "writes": rep.writes, "peak_rss_mb": peak_mb(), **cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--points", type=int, default=3000)
    ap.add_argument("--total", type=int, default=6000, help="planned last step of every run")
    ap.add_argument("--store", type=Path, default=None, help="seeded store (default /tmp/forecaster-bench-mlflow-NxP)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--law", default="auto")
    ap.add_argument("--sample", type=int, default=None, help="points per history read in full (default: the sync's)")
    ap.add_argument("--no-cache", action="store_true", help="sync without the history cache (for comparison)")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare full-history read")
    ap.add_argument("--no-plots", action="store_true", help="sync without the PNG of each forecast (its share)")
    ap.add_argument("--changed", type=float, default=0.1, help="share of runs that log new steps")
    ap.add_argument("--new-steps", type=int, default=60)
    ap.add_argument("--compare-reads", type=int, default=0, metavar="N",
                    help="only time reading N runs' whole histories both ways (get_metric_history, bulk route)")
    ap.add_argument("--filter", default=None, help="sync only matching runs, e.g. \"attributes.run_name LIKE 'run-0%%'\"")
    args = ap.parse_args()
    from forecaster.cli import _own_process

    _own_process()  # the process as `forecast sync` sets it up (its allocator settings)
    store = args.store or Path(f"/tmp/forecaster-bench-mlflow-{args.runs}x{args.points}")
    meta = {"runs": args.runs, "points": args.points, "total": args.total}
    marker = store / "seeded.json"
    if not marker.exists() or json.loads(marker.read_text()) != meta:
        if store.exists():
            import shutil

            shutil.rmtree(store)
        print(f"seeding {args.runs} runs x {args.points} points into {store} ...", flush=True)
        seed(store, args.runs, args.points, args.total)
    # work on a copy so every benchmark starts from the same unsynced store
    work = store.parent / (store.name + "-work")
    import shutil

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(store, work)
    srv = start_mlflow_server(work)  # reuses work/mlflow.db
    state = Path(tempfile.mkdtemp(prefix="forecaster-bench-state-"))
    from forecaster.sync import HISTORY_SAMPLE

    sample = args.sample or HISTORY_SAMPLE
    settings = {"device": args.device, "law": args.law, "history_sample": sample, "plots": not args.no_plots,
                "history_cache": None if args.no_cache else state / "history.sqlite"}
    out = {"runs": args.runs, "points": args.points, "total": args.total, "filter": args.filter, "law": args.law,
           "sample": sample, "cache": not args.no_cache, "plots": not args.no_plots, "cpu_count": os.cpu_count(),
           "load_avg_start": os.getloadavg()}
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(srv.uri)
        exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
        src = [r for r in client.search_runs([exp_id], args.filter or "", max_results=1000)
               if r.data.tags.get("forecast.kind") != "forecast"]
        ids = sorted(r.info.run_id for r in src)
        if args.compare_reads:
            out["compare_reads"] = compare_reads(srv.uri, args.compare_reads)
            print(json.dumps(out, indent=2))
            return
        if not args.no_bare:
            peak_reset()
            srv0, cpu0, start = server_cpu(srv.proc.pid), time.process_time(), time.perf_counter()
            n = bare_read(srv.uri, ids)
            out["bare_read"] = {"wall_s": round(time.perf_counter() - start, 2), "points": n,
                                "cpu_s": round(time.process_time() - cpu0, 2),
                                "server_cpu_s": round(server_cpu(srv.proc.pid) - srv0, 2), "peak_rss_mb": peak_mb()}
            print(json.dumps({"bare_read": out["bare_read"]}), flush=True)
        peak_reset()
        rep, wall, cpu = timed_sync(srv.uri, args.filter, srv.proc.pid, **settings)
        n = len(rep.outcomes)
        out["synced_runs"] = n
        assert len(rep.by("forecast")) == n, rep.summary()
        out["first"] = phase(rep, wall, cpu)
        print(json.dumps({"first": out["first"]}), flush=True)
        peak_reset()
        rep, wall, cpu = timed_sync(srv.uri, args.filter, srv.proc.pid, **settings)
        assert rep.writes == 0 and len(rep.by("unchanged")) == n, rep.summary()
        out["noop"] = phase(rep, wall, cpu)
        # a share of the runs train on: only they are read (from their watermark) and rewritten
        changed = ids[:: max(1, round(1 / args.changed))][: max(1, round(len(ids) * args.changed))]
        train_on(srv.uri, changed, args.new_steps, args.total)
        peak_reset()
        rep, wall, cpu = timed_sync(srv.uri, args.filter, srv.proc.pid, **settings)
        assert len(rep.by("forecast")) == len(changed), rep.summary()
        out["incremental"] = {"changed_runs": len(changed), **phase(rep, wall, cpu)}
    finally:
        srv.stop()
        shutil.rmtree(state, ignore_errors=True)
    f = out["first"]["wall_s"]
    out["ratios"] = {"first_over_bare": round(f / out["bare_read"]["wall_s"], 3) if "bare_read" in out else None,
                     "incremental_over_first": round(out["incremental"]["wall_s"] / f, 3),
                     "noop_s": out["noop"]["wall_s"]}
    out["load_avg_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
