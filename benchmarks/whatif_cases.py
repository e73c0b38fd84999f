"""What-if cooldowns on the dev set: each run seen up to where its LR starts to decay, its cooldown
forecast from there as a user would ask for it ("cool down now over N steps, shape S, to F").

Cases are dev_cases.py's `decay` cut (every run of ../shared/data/lr_curves that holds its peak LR
and then decays: Luo's WSD and two-stage runs, PKU's WSD, modded-nanogpt's warmdowns), each in a
group with its siblings complete (never the branch itself). The run's logged LR after the cut is
not used: the cooldown is described by its length, the best-fitting shape of `whatif.SHAPES` and
its final LR share (held to the run's end in two-stage schedules), and forecast with `advisor.held` + `whatif.cooldown` through
`whatif.predict_variants`, all cases of a data set in one batched call per fitted law. Truth and
error as evaluation.md (mean of the last 3 values; PKU's smoothed). Methods: ours (law="auto") and
the momentum and multi-power laws fitted authors-style (dev_cases.METHODS), each asked the same
what-if; "ours, real LR rows" is `predict()` with the run's logged future LR, for reference.
Ranking: within each data set's groups, pairs of cases whose true finals differ by more than
0.2 %, counted as right when the forecasts order them the same way.

    python benchmarks/whatif_cases.py [--sets luo,pku,modded,speedrun] [--methods ours,momentum,multipower]
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import dev_cases  # noqa: E402
from forecaster import advisor, whatif  # noqa: E402
from forecaster.forecast import Forecaster  # noqa: E402

METHODS = {k: v for k, v in dev_cases.METHODS.items() if v is not None}


def describe(run: dev_cases.Run, start: int) -> tuple[int, str, float, int]:
    """The cooldown as a user would state it: length (to where the LR stops falling), shape, final
    LR share, and the step the final LR is held to (the run's end; later than the decay's end in
    two-stage schedules)."""
    end = int(run.lr_steps[-1])
    lr0 = float(np.interp(start, run.lr_steps, run.lr_values))
    after = run.lr_steps > start
    low = float(run.lr_values[after].min())
    # the decay ends where the LR first comes within 1 % (of the drop) of its lowest value
    near = run.lr_values[after] <= low + 0.01 * (lr0 - low)
    stop = int(run.lr_steps[after][np.argmax(near)])
    final = float(np.clip(low / lr0, 0.0, 0.99))
    s = np.linspace(start, stop, 65)
    q = (s - start) / max(stop - start, 1)
    frac = (np.interp(s, run.lr_steps, run.lr_values) / lr0 - final) / max(1 - final, 1e-12)
    cands = {"linear": 1 - q, "cosine": 0.5 * (1 + np.cos(np.pi * q)), "sqrt": 1 - np.sqrt(q)}
    floor = final if final > 0 else 1e-3
    cands["exp"] = (floor**q - floor) / (1 - floor)
    shape = min(cands, key=lambda k: float(np.sum((cands[k] - frac) ** 2)))
    return max(stop - start, 1), shape, final, end


def score(f, run: dev_cases.Run, keep: np.ndarray) -> dict:
    hidden, truth = run.steps[~keep], run.truth[~keep]
    if f.skipped or not len(f.steps):
        return dict(unforecast=f.skipped or "empty")
    p10, p50, p90 = (np.interp(hidden, f.steps, q) for q in (f.p10, f.p50, f.p90))
    true3 = truth[-3:].mean()
    return dict(error=abs(p50[-3:].mean() / true3 - 1), final=float(p50[-3:].mean()), truth=float(true3),
                coverage=float(np.mean((truth >= p10) & (truth <= p90))), width=float(np.mean((p90 - p10) / p50)),
                unidentified=any(n.startswith(advisor.UNIDENTIFIED) for n in f.notes))


def run_set(name: str, methods: list[str]) -> None:
    groups = dev_cases.LOADERS[name]()
    hs, meta = dev_cases.cases(groups, "decay")
    if not meta:
        return
    print(f"\n## {name}: {len(meta)} cooldowns from their start\n")
    print("| method | cases | mean error % | worst % | p10-p90 coverage % | mean band width % | unidentified | "
          "ranked right | CPU s |\n|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        t0 = time.process_time()
        fc = Forecaster(**METHODS[m]).fit(hs)
        pairs = []
        for row, run, keep, _, _ in meta:
            h = fc.histories_[row]
            length, shape, final, end = describe(run, h.last_step)
            pairs.append((row, whatif.cooldown(advisor.held(h, fc.warmup), h.last_step, length, shape, final,
                                               until=end)))
        ok = [(r, s) for r, s in pairs if r not in fc.skipped_]
        got = dict(zip([r for r, _ in ok], whatif.predict_variants(fc, ok)))
        rows = [score(got[row], run, keep) if row in got else dict(unforecast=fc.skipped_[row])
                for row, run, keep, _, _ in meta]
        secs = time.process_time() - t0
        _line(m, "what-if", rows, meta, secs)
        if m == "ours":
            real = fc.predict()
            _line(m, "real LR rows", [score(real[row], run, keep) for row, run, keep, _, _ in meta], meta, None)


def _line(m: str, how: str, rows: list[dict], meta, secs) -> None:
    ok = [r for r in rows if "error" in r]
    err = np.array([r["error"] for r in ok])
    right = total = 0
    by_group: dict[str, list[dict]] = {}
    for r, (_, _, _, _, case) in zip(rows, meta):
        by_group.setdefault(case.split("/")[0], []).append(r)
    for rs in by_group.values():
        for a, b in combinations([r for r in rs if "error" in r], 2):
            if abs(a["truth"] / b["truth"] - 1) > 0.002:
                total += 1
                right += (a["final"] < b["final"]) == (a["truth"] < b["truth"])
    label = f"{dev_cases.LABELS[m]}, {how}"
    print(f"| {label} | {len(ok)} of {len(rows)} | {100 * err.mean():.2f} | {100 * err.max():.2f} | "
          f"{100 * np.mean([r['coverage'] for r in ok]):.0f} | {100 * np.mean([r['width'] for r in ok]):.1f} | "
          f"{sum(r['unidentified'] for r in ok)} | {right} of {total} | {'-' if secs is None else f'{secs:.0f}'} |",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(dev_cases.LOADERS))
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()
    if not dev_cases.LR_CURVES.is_dir():
        sys.exit(f"needs the shared data: {dev_cases.LR_CURVES} not found")
    for name in a.sets.split(","):
        run_set(name, a.methods.split(","))


if __name__ == "__main__":
    main()
