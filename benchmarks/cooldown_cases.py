"""Lone runs seen into their cooldown: the two modded-nanogpt GPT-2 runs, each alone (no sibling).

Each run (AdamW baseline, Muon record; train loss at every step and validation loss every 125-128
steps) is cut at a share of its steps, with LR rows every 50 steps kept to the end, and forecast
alone. Both runs hold their LR and then decay it linearly to 0 over their last 22-28 %, so cuts
from 80 % on fall inside the cooldown: the run's own partial decay is the only sign of its
annealing response. Truth: the mean of the last 3 values (evaluation.md). Methods: ours
(`Forecaster()`, the default), the same fit extrapolated without the check of the run's own decay
(`Forecaster._forecasts`, what the law's fit alone says), and the last observed value.

    python benchmarks/cooldown_cases.py [--cutoffs 0.25,0.5,0.75,0.8,0.85,0.9,0.95]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from forecaster.forecast import Forecaster  # noqa: E402
from forecaster.histories import RunHistory  # noqa: E402

DATA = REPO.parent / "shared/data/lr_curves/modded_nanogpt_speedrun"
LR_EVERY = 50


def cases(cut: float) -> list[tuple[str, RunHistory, np.ndarray, np.ndarray]]:
    """(name, history cut at `cut`, hidden steps, hidden values) per run and metric."""
    out = []
    for path in sorted(DATA.glob("*.csv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        lr_key = "lr" if "lr" in rows[0] else "lr_multiplier"
        lr_steps = np.array([int(r["step"]) for r in rows])
        lr_values = np.array([float(r[lr_key]) for r in rows])
        logged = (lr_steps % LR_EVERY == 0) | (lr_steps == lr_steps[-1])
        for metric in ("train_loss", "val_loss"):
            have = [r for r in rows if r[metric]]
            steps = np.array([int(r["step"]) for r in have])
            values = np.array([float(r[metric]) for r in have])
            keep = steps <= cut * steps[-1]
            name = f"{path.stem}/{metric}"
            h = RunHistory(name, steps[keep], values[keep], group=name, lr_steps=lr_steps[logged],
                           lr_values=lr_values[logged], horizon=steps[~keep])
            out.append((h.run, h, steps[~keep], values[~keep]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoffs", default="0.25,0.5,0.75,0.8,0.85,0.9,0.95")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the shared data: {DATA} not found")
    cutoffs = [float(c) for c in a.cutoffs.split(",")]
    methods = ("ours (default)", "the law's fit alone (no decay check)", "last value")
    rows = {m: [] for m in methods}  # (cutoff, error, truth in band, horizon coverage)
    flagged = 0
    print("Per case, ours: error % and whether the truth is inside [p10, p90]\n")
    print("| cutoff | run / metric | law | ours error % | in band | law's fit alone error % | in band |")
    print("|---|---|---|---|---|---|---|")
    for cut in cutoffs:
        cs = cases(cut)
        fc = Forecaster().fit([h for _, h, _, _ in cs])
        ours, alone = fc.predict(), fc._forecasts()
        for k, (name, h, steps, values) in enumerate(cs):
            truth = values[-3:].mean()
            cells = []
            for m, f in ((methods[0], ours[k]), (methods[1], alone[k])):
                at = np.searchsorted(f.steps, steps)
                lo, mid, hi = (q[at][-3:].mean() for q in (f.p10, f.p50, f.p90))
                cover = np.mean((values >= f.p10[at]) & (values <= f.p90[at]))
                rows[m].append((cut, mid / truth - 1, lo <= truth <= hi, cover))
                cells += [f"{100 * (mid / truth - 1):+.2f}", "yes" if lo <= truth <= hi else "**no**"]
            flagged += any("first half of this run's own LR decay" in n for n in ours[k].notes)
            rows[methods[2]].append((cut, h.values[-1] / truth - 1, np.nan, np.nan))
            print(f"| {cut:g} | {name} | {ours[k].law} | {' | '.join(cells)} |")
    print(f"\nOurs flagged {flagged} of {len(rows[methods[0]])} cases as a decay the law "
          "misextrapolates (the unidentified band instead of the law's fit).\n")
    print("| cutoffs | method | cases | mean abs error % | worst % | truth in [p10, p90] | horizon coverage % |")
    print("|---|---|---|---|---|---|---|")
    for label, sel in (("< 0.8 (before the cooldown)", lambda c: c < 0.8), (">= 0.8 (inside it)", lambda c: c >= 0.8),
                       ("all", lambda c: True)):
        for m in methods:
            r = [x for x in rows[m] if sel(x[0])]
            if not r:
                continue
            err = np.abs([x[1] for x in r])
            band = "-" if m == "last value" else f"{sum(bool(x[2]) for x in r)}/{len(r)}"
            cov = "-" if m == "last value" else f"{100 * np.mean([x[3] for x in r]):.0f}"
            print(f"| {label} | {m} | {len(r)} | {100 * err.mean():.2f} | {100 * err.max():.2f} | {band} | {cov} |")


if __name__ == "__main__":
    main()
