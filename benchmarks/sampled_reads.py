"""What sampled history reads cost in accuracy: noisy per-step train losses, every point vs thinned.

`forecast sync` reads each history in full once, keeping at most `SyncSettings.history_sample`
points per key, evenly spaced by row with the first and last kept (what MLflow's sampled history
route returns; `forecaster.cache.thin` does the same to histories read by other means). This runs
the per-run protocol of `benchmarks/pku_cases.py` (three 100M runs of 33,900 raw per-step losses,
each in turn the target cut at a share of its steps, the two siblings complete, LR logged every
`--lr-every` steps) with the observed metric and LR points of every run thinned to N points before
the fit, for several N, in this one process, and reports the forecast's error against the truth
at the target's end (mean of its last 3 values, and of its last 200 steps).

    .venv/bin/python benchmarks/sampled_reads.py [--samples 0,2000,1000,500,250] [--cutoffs 0.25,0.5]
    .venv/bin/python benchmarks/sampled_reads.py --data nanogpt --cutoffs 0.5

`--data nanogpt`: modded-nanogpt's per-step `train_loss` (the track-1 groups that log it), each run
of over 2,000 steps in turn the target, the rest of its group complete.

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


FOLLOW = True  # --no-follow-siblings: the law's smooth curve, no shared per-step noise
TAIL = 0  # --tail: the last points of every key kept exact on top of the sample


GRID = 0  # --grid W: windows of W steps aligned at multiples of W, each sampled to n points, the last partial one exact
KEYS = "both"  # --keys: which keys a sampled read thins (both, lr, loss)


def grid_thin(s: Series, window: int, n: int) -> Series:
    """What per-window sampled reads return: complete windows [jW, (j+1)W) sampled to `n` rows
    each (first row of each of n equal buckets, as MLflow's NTILE does), the partial last one whole."""
    if not len(s):
        return s
    keep = []
    last_start = (int(s.steps[-1]) // window) * window
    for j in range(0, last_start, window):
        idx = np.nonzero((s.steps >= j) & (s.steps < j + window))[0]
        keep.extend(b[0] for b in np.array_split(idx, min(n, len(idx))) if len(b))
    keep.extend(np.nonzero(s.steps >= last_start)[0])
    keep = np.unique(np.asarray(keep, dtype=np.int64))
    return Series(s.steps[keep], s.values[keep])


def thinned(h: RunHistory, n: int) -> RunHistory:
    """The history as a sampled read of `n` points per key would deliver it."""
    if not n:
        return h

    def one(s: Series) -> Series:
        return grid_thin(s, GRID, n) if GRID else thin(s, n, TAIL)

    s = one(Series(h.steps, h.values)) if KEYS != "lr" else Series(h.steps, h.values)
    lr_s, lr_v = h.lr_steps, h.lr_values
    if lr_s is not None and KEYS != "loss":
        t = one(Series(lr_s, lr_v))
        lr_s, lr_v = t.steps, t.values
    return RunHistory(h.run, s.steps, s.values, group=h.group, lr_steps=lr_s, lr_values=lr_v,
                      schedule=h.schedule, horizon=h.horizon, size=h.size, metric=h.metric, meta=dict(h.meta))


NANOGPT = REPO.parent / "shared/data/lr_curves/modded_nanogpt_records/curves.csv.gz"
# the groups whose logs carry the per-step train loss, with at least two runs to pool
NANOGPT_GROUPS = ("t1_d768_241108", "t1_d1024_241108", "t1_d768_241103", "t1_1p5B_muon")


def nanogpt_cases(path: Path, cut: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """modded-nanogpt's per-step `train_loss`: each run over 2,000 steps in turn the target, cut at
    `cut` of its steps, its group's other runs complete; one CSV as `forecast predict` reads it."""
    import csv
    import gzip

    runs: dict[tuple[str, str], list[tuple[int, str, float]]] = {}
    with gzip.open(NANOGPT, "rt") as fh:
        for r in csv.DictReader(fh):
            if r["group"] in NANOGPT_GROUPS and r["train_loss"]:
                runs.setdefault((r["group"], r["run"]), []).append((int(r["step"]), r["lr"], float(r["train_loss"])))
    hidden = {}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "lr", "loss"])
        for (group, target), rows in sorted(runs.items()):
            if rows[-1][0] < 2000:
                continue
            case = f"{group}@{target}"
            last = rows[-1][0] * cut
            for (g, name), other in sorted(runs.items()):
                if g != group:
                    continue
                for step, lr, y in other:
                    seen = name != target or step <= last
                    w.writerow([f"{case}/{name}", case, step, lr, f"{y:.6f}" if seen else ""])
            steps = np.array([s for s, _, _ in rows])
            values = np.array([y for _, _, y in rows])
            hidden[f"{case}/{target}"] = (steps[steps > last], values[steps > last])
    return hidden


def errors(hist: list[RunHistory], hidden: dict, n: int, law: str, seed: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    out = Forecaster(law=law, seed=seed, follow_siblings=FOLLOW).fit([thinned(h, n) for h in hist]).predict()
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
    ap.add_argument("--data", default="pku", choices=("pku", "nanogpt"))
    ap.add_argument("--no-follow-siblings", action="store_true")
    ap.add_argument("--grid", type=int, default=0, help="sample per aligned window of this many steps")
    ap.add_argument("--tail", type=int, default=0, help="keep the last N points of each key exact")
    ap.add_argument("--keys", default="both", choices=("both", "lr", "loss"), help="which keys are thinned")
    a = ap.parse_args()
    global TAIL, GRID, FOLLOW, KEYS
    TAIL, GRID, FOLLOW, KEYS = a.tail, a.grid, not a.no_follow_siblings, a.keys
    source = DATA if a.data == "pku" else NANOGPT
    if not source.exists():
        sys.exit(f"needs the shared data: {source} not found")
    data = {n: load(n) for n in NAMES} if a.data == "pku" else None
    print(f"{a.data}, law {a.law}; error = |p50 / truth - 1| at the target's end, mean over the targets\n")
    print("| cutoff | points per key | mean error % (last 3) | mean error % (last 200) | fit seconds |")
    print("|---|---|---|---|---|")
    for cut in (float(c) for c in a.cutoffs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "cases.csv"
            hidden = write_cases(src, cut, a.lr_every, data) if a.data == "pku" else nanogpt_cases(src, cut)
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
