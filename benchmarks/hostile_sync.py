"""Hostile runs cost the healthy ones nothing: a 300-run experiment with 5 % runs gone wrong.

One experiment (one SQLite store) holds healthy runs (10 sweeps of 30, logged like HF Trainer,
half still running, tagged `healthy`) and 5 % hostile runs drawn from the ways runs go wrong that
leave nothing to keep (`tests/mlflow_runs.HOSTILE_KINDS` less the repairable ones: infinities, a
summed loss, perplexity under the loss's name, a zero loss, an absurd planned end). It is synced
twice: first with `--filter "tags.healthy = 'yes'"` (the reference: the hostile runs are not even
listed), then in full with `--force`. Same runs, same groups, so the healthy forecasts must come
out the same; the script reports the exit codes, the largest relative difference of a healthy
run's forecast final, and what happened to each hostile run.

    .venv/bin/python benchmarks/hostile_sync.py            # 300 runs, 5 % hostile
    .venv/bin/python benchmarks/hostile_sync.py --runs 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from mlflow_runs import HOSTILE_KINDS, REPAIRABLE, log_hf_run, log_hostile_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--hostile", type=float, default=0.05, help="share of hostile runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from click.testing import CliRunner
    from mlflow.tracking import MlflowClient

    from forecaster.cli import main as cli

    tmp = Path(tempfile.mkdtemp(prefix="forecaster-hostile-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    n_bad = max(1, round(args.runs * args.hostile))
    n_good = args.runs - n_bad
    pool = [k for k in HOSTILE_KINDS if k not in REPAIRABLE]
    kinds = [pool[i % len(pool)] for i in range(n_bad)]
    out: dict = {"runs": args.runs, "hostile": n_bad, "kinds": kinds}
    exp = client.create_experiment("hostile", artifact_location=str(tmp / "artifacts"))
    good: dict[str, str] = {}
    for i in range(n_good):
        sweep = i % 10
        running = i % 2 == 1
        good[f"good-{i}"] = rid = log_hf_run(
            client, exp, f"good-{i}", seed=i, upto=200 + 20 * (i % 30) if running else 1000,
            status="RUNNING" if running else "FINISHED", scale=1.0 + 0.02 * sweep, params={"sweep": str(sweep)})
        client.set_tag(rid, "healthy", "yes")
    rng = np.random.default_rng(args.seed)
    bad = {f"{j}-{kind}": log_hostile_run(client, exp, kind, rng, params={"sweep": str(j % 10)})
           for j, kind in enumerate(kinds)}
    finals: dict[str, dict[str, float]] = {}
    for variant, extra in (("reference", ["--filter", "tags.healthy = 'yes'"]), ("hostile", ["--force"])):
        t = time.perf_counter()
        res = CliRunner().invoke(cli, ["sync", "--tracking-uri", uri, "--experiment", "hostile", "--group-by",
                                       "sweep", "--no-plots", "--lock-file", str(tmp / "lock"), *extra])
        out[f"{variant}_exit"] = res.exit_code
        out[f"{variant}_seconds"] = round(time.perf_counter() - t, 1)
        out[f"{variant}_traceback"] = "Traceback" in res.output
        out[f"{variant}_summary"] = res.output.strip().splitlines()[-1] if res.output.strip() else ""
        finals[variant] = {}
        for name, rid in good.items():
            tags = client.get_run(rid).data.tags
            if "forecast.final" in tags:
                finals[variant][name] = float(tags["forecast.final"])
    ref, got = finals["reference"], finals["hostile"]
    common = sorted(ref.keys() & got.keys())
    diffs = {k: abs(got[k] / ref[k] - 1.0) for k in common}
    out["healthy_forecast"] = len(common)
    out["healthy_missing"] = sorted(ref.keys() ^ got.keys())
    out["healthy_max_rel_diff"] = max(diffs.values()) if diffs else None
    out["hostile_outcome"] = {}
    for name, rid in bad.items():
        tags = client.get_run(rid).data.tags
        out["hostile_outcome"][name] = (tags.get("forecast.status", "?") + ": "
                                        + (tags.get("forecast.skipped") or tags.get("forecast.notes") or ""))[:160]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
