"""What sampled history reads cost in accuracy: PKU's noisy per-step train losses, every point vs thinned.

`forecast sync` reads each history in full once, keeping at most `SyncSettings.history_sample`
points per key, evenly spaced by row with the first and last kept (what MLflow's sampled history
route returns; `forecaster.cache.thin` does the same to histories read by other means). This runs
the per-run protocol of `benchmarks/pku_cases.py` (three 100M runs of 33,900 raw per-step losses,
each in turn the target cut at a share of its steps, the two siblings complete, LR logged every
`--lr-every` steps) with the observed metric and LR points of every run thinned to N points before
the fit, for several N, in this one process, and reports the forecast's error against the truth
at the target's end (mean of its last 3 values, and of its last 200 steps).

    .venv/bin/python benchmarks/sampled_reads.py [--samples 0,2000,1000,500,250] [--cutoffs 0.25,0.5]

N = 0 is every point (the baseline). The run-to-run spread of the fit itself is given by the same
baseline refitted with other seeds (`--seeds`), so a difference can be told from noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from pku_cases import DATA, NAMES, load, write_cases  # noqa: E402

from forecaster.cache import thin  # noqa: E402
from forecaster.csvio import read_histories  # noqa: E402
from forecaster.forecast import Forecaster  # noqa: E402
from forecaster.histories import RunHistory  # noqa: E402
from forecaster.trackers import Series  # noqa: E402


def thinned(h: RunHistory, n: int) -> RunHistory:
    """The history as a sampled read of `n` points per key would deliver it."""
    if not n:
        return h
    s = thin(Series(h.steps, h.values), n)
    lr_s, lr_v = h.lr_steps, h.lr_values
    if lr_s is not None:
        t = thin(Series(lr_s, lr_v), n)
        lr_s, lr_v = t.steps, t.values
    return RunHistory(h.run, s.steps, s.values, group=h.group, lr_steps=lr_s, lr_values=lr_v,
                      schedule=h.schedule, horizon=h.horizon, size=h.size, metric=h.metric, meta=dict(h.meta))


def errors(hist: list[RunHistory], hidden: dict, n: int, law: str, seed: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    out = Forecaster(law=law, seed=seed).fit([thinned(h, n) for h in hist]).predict()
    secs = time.perf_counter() - t0
    index = {h.run: i for i, h in enumerate(hist)}
    e3, e200 = [], []
    for r, (steps, values) in hidden.items():
        f = out[index[r]]
        pred = f.p50[np.searchsorted(f.steps, steps[-3:])].mean()
        e3.append(abs(pred / values[-3:].mean() - 1))
        e200.append(abs(pred / values[-200:].mean() - 1))
    return float(np.mean(e3)), float(np.mean(e200)), secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="0,2000,1000,500,250")
    ap.add_argument("--cutoffs", default="0.25,0.5")
    ap.add_argument("--lr-every", type=int, default=250)
    ap.add_argument("--law", default="auto")
    ap.add_argument("--seeds", default="1,2", help="extra seeds of the full-history fit (its noise)")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the shared data: {DATA} not found")
    data = {n: load(n) for n in NAMES}
    print(f"law {a.law}, LR every {a.lr_every} steps; error = |p50 / truth - 1| at the target's end, "
          "mean over the 3 targets\n")
    print("| cutoff | points per key | mean error % (last 3) | mean error % (last 200) | fit seconds |")
    print("|---|---|---|---|---|")
    for cut in (float(c) for c in a.cutoffs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "cases.csv"
            hidden = write_cases(src, cut, a.lr_every, data)
            hist, _ = read_histories(src)
        for n in (int(x) for x in a.samples.split(",")):
            e3, e200, secs = errors(hist, hidden, n, a.law, 0)
            label = "every point" if not n else f"{n:,}"
            print(f"| {cut:g} | {label} | {100 * e3:.2f} | {100 * e200:.2f} | {secs:.0f} |", flush=True)
            if not n:
                for sd in (int(x) for x in a.seeds.split(",") if x):
                    e3s, e200s, secs = errors(hist, hidden, 0, a.law, sd)
                    print(f"| {cut:g} | every point, seed {sd} | {100 * e3s:.2f} | {100 * e200s:.2f} | {secs:.0f} |",
                          flush=True)


if __name__ == "__main__":
    main()
