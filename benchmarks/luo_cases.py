"""Forecast accuracy on evaluation.md's cases, against the laws fitted the way their authors do.

Each of Luo et al.'s 27 curves (25M/100M/400M x 9 schedules) is in turn the target, cut at a
share of its steps with its LR rows kept; its 8 siblings stay complete. One group per case, all
cases of a cutoff in one Forecaster call. Methods: our default (partial pooling, law chosen on the
held-back tail) and the momentum and multi-power laws with every parameter shared across the group
(one parameter set per model, as the papers fit them), plus the last observed value.

    python benchmarks/luo_cases.py [--cutoffs 0.25,0.5,0.75] [--methods ours,momentum-shared,...] [--lone] [--in-sample]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecaster.forecast import Forecaster  # noqa: E402
from forecaster.histories import RunHistory  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data/lr_curves/luo2025_multipowerlaw"
NAMES = ["cosine_24000", "constant_24000", "wsdcon_9", "constant_72000", "cosine_72000",
         "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
METHODS = {
    "ours (auto)": dict(law="auto"),
    "ours (momentum)": dict(law="momentum"),
    "ours (multipower)": dict(law="multipower"),
    # as the papers fit them: one parameter set per group, on every point given
    "momentum shared (authors)": dict(law="momentum", pool=1e8, skip_early=0.0, follow_siblings=False),
    "multipower shared (authors)": dict(law="multipower", pool=1e8, skip_early=0.0, follow_siblings=False),
}


def load(size: str, name: str):
    rows = list(csv.DictReader(open(DATA / f"csv_{size}" / f"{name}.csv")))
    return tuple(np.array([float(r[k]) for r in rows]) for k in ("step", "lr", "loss"))


def cases(cut: float, sizes: list[str], lone: bool = False):
    """Histories and hidden truths: each curve the target of one group, with its 8 siblings
    complete, or (`lone`) alone, as a run with no finished sibling is."""
    hs, truth = [], []
    for size in sizes:
        data = {n: load(size, n) for n in NAMES}
        for target in NAMES:
            for n, (s, lr, y) in data.items():
                if lone and n != target:
                    continue
                s = s.astype(np.int64)
                if n == target:
                    keep = s <= cut * s[-1]
                    if lone and keep.sum() < 5:
                        continue  # too few points to fit alone (the forecaster would skip it)
                    hs.append(RunHistory(n, s[keep], y[keep], group=f"{size}/{target}", lr_steps=s, lr_values=lr,
                                         horizon=s[~keep]))
                    truth.append((len(hs) - 1, y[~keep]))
                else:
                    hs.append(RunHistory(n, s, y, group=f"{size}/{target}", lr_steps=s, lr_values=lr))
    return hs, truth


def in_sample(methods: list[str], sizes: list[str]) -> None:
    """Each method fitted on the complete curves of a size, one group: how far its fit misses each
    curve's last 3 values on data it has seen, a floor for forecasting those values."""
    from forecaster.batch import build_features

    print("| method | in-sample error at the last 3 values, mean % | worst % |")
    print("|---|---|---|")
    for name in methods:
        errs = []
        for size in sizes:
            hs = []
            for n in NAMES:
                s, lr, y = load(size, n)
                s = s.astype(np.int64)
                hs.append(RunHistory(n, s, y, group=size, lr_steps=s, lr_values=lr))
            fc = Forecaster(**METHODS[name]).fit(hs)
            for i, h in enumerate(hs):
                fit, rows = fc.fits_[fc.choice_[i]]
                g, m = (int(v) for v in (fit.members == rows.index(i)).nonzero()[0])
                pred = fit.law.predict(fit.theta()[g, m][None], build_features([h], [h.steps]))[0].numpy()
                errs.append(abs(pred[-3:].mean() / h.values[-3:].mean() - 1))
        print(f"| {name} | {100 * np.mean(errs):.3f} | {100 * np.max(errs):.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoffs", default="0.25,0.5,0.75")
    ap.add_argument("--sizes", default="25,100,400")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--lone", action="store_true", help="each target alone in its group, no siblings")
    ap.add_argument("--in-sample", action="store_true",
                    help="fit the complete curves instead and report each method's miss of the last 3 values")
    a = ap.parse_args()
    if a.in_sample:
        return in_sample(a.methods.split(","), a.sizes.split(","))
    print("| cutoff | method | cases | final err mean % | final err worst % | band coverage % | laws | s |")
    print("|---|---|---|---|---|---|---|---|")
    for cut in [float(c) for c in a.cutoffs.split(",")]:
        hs, truth = cases(cut, a.sizes.split(","), a.lone)
        last = [abs(hs[i].values[-1] - y[-3:].mean()) / y[-3:].mean() for i, y in truth]
        print(f"| {cut:g} | last value | {len(truth)} | {100 * np.mean(last):.3f} | {100 * np.max(last):.3f} | - | - | - |")
        for name in a.methods.split(","):
            t0 = time.perf_counter()
            out = Forecaster(**METHODS[name]).fit(hs).predict()
            secs = time.perf_counter() - t0
            err, cov, used = [], [], {}
            for i, y in truth:
                f = out[i]
                tr = y[-3:].mean()
                err.append(abs(f.p50[-3:].mean() - tr) / tr)
                cov.append(np.mean((y >= f.p10) & (y <= f.p90)))
                used[f.law] = used.get(f.law, 0) + 1
            laws = ", ".join(f"{k} x{v}" for k, v in sorted(used.items()))
            print(f"| {cut:g} | {name} | {len(truth)} | {100 * np.mean(err):.3f} | {100 * np.max(err):.3f} | "
                  f"{100 * np.mean(cov):.0f} | {laws} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
