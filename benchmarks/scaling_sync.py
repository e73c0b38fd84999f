"""`forecast sync --scaling` end to end on a local MLflow store: fit against a known law, and cost.

    python benchmarks/scaling_sync.py [--workdir DIR]

Logs the scenario of tests/test_scaling_sync.py (12 runs at 4 sizes x 3 token counts whose final
losses follow L = 1.8 + 400 N^-0.34 + 600 D^-0.30, 3 of them still RUNNING at 70% of their steps)
into a sqlite:/// MLflow store, syncs twice with the scaling step on, and prints the fitted law
against the truth, the predicted loss of a 1e9-parameter, 2e10-token run, and each sync's writes
and timings (the second sync must write nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="where the sqlite store goes (default: a temp dir)")
    args = ap.parse_args()
    import numpy as np
    from mlflow.tracking import MlflowClient
    from mlflow_runs import log_hf_run
    import test_scaling_sync as T

    from forecaster import trackers
    from forecaster.sync import sync

    work = Path(args.workdir or tempfile.mkdtemp(prefix="scaling-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment(f"scaling-{len(client.search_experiments())}")
    seed = 100
    for N in T.SIZES:
        for tps in T.TOKENS_PER_STEP:
            seed += 1
            running = (N, tps) in T.RUNNING
            upto = 700 if running else 1000
            log_hf_run(client, exp, f"N{N:g}-D{tps * 1000:g}", upto=upto, seed=seed,
                       status="RUNNING" if running else "FINISHED",
                       params={"n_params": f"{N:g}", "tokens_per_step": f"{tps:g}"},
                       loss_override=T._curve(T.chinchilla(N, tps * 1000), seed, upto))
    name = client.get_experiment(exp).name
    for i in (1, 2):
        with trackers.load("mlflow")(uri=uri, experiments=[name]) as t:
            rep = sync(t, T._settings(), progress=False)
        o = rep.scaling[0]
        times = ", ".join(f"{k} {v:.2f}s" for k, v in rep.timings.items())
        print(f"sync {i}: scaling {o.action}, {rep.writes} writes; {times}")
        if o.fit is not None:
            f = o.fit
            print("  fitted:", ", ".join(f"{k}={v:.4g} [{f.intervals[k][0]:.3g}, {f.intervals[k][1]:.3g}]"
                                         for k, v in f.params.items()))
            print("  truth: ", ", ".join(f"{k}={v:.4g}" for k, v in T.TRUTH.items()))
            with np.errstate(all="ignore"):
                p = f.predict(N=1e9, D=2e10)
            print(f"  N=1e9, D=2e10: predicted {p['value']:.4f} (p10 {p['lo']:.4f}, p90 {p['hi']:.4f}), "
                  f"truth {T.chinchilla(1e9, 2e10):.4f}")


if __name__ == "__main__":
    main()
