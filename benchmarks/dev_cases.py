"""evaluation.md's per-run protocol on every data set in ../shared/data/lr_curves, each on its own.

A case is one target run cut at 25 % or 50 % of its steps, or where its LR starts to decay
(targets whose schedule holds its peak LR for a while and then decays), its metric hidden after
the cut and its LR rows kept to the end; every other run of its group stays complete. All cases
of a data set and cut go through one Forecaster call, one group per case. Truth: the mean of the
target's last 3 evaluated values; prediction: the mean of p50 at those steps. Methods: ours
(law="auto"), the momentum and multi-power laws fitted the way their authors fit them (one
parameter set per group, every point: luo_cases.METHODS), and the last observed value.

Data sets: `luo` (25M/100M/400M, 9 schedules each, three groups), `pku` (3 schedules, one group;
raw per-step training loss, so truth is taken on a 201-step centred mean as pku_cases.py compares
against; coverage is of the logged values, as everywhere: the band is the logged metric's, and
where siblings share a run's data order its quantiles follow their step-to-step deviations, which
a smoothed truth does not have; LR rows every 250 steps), `modded` (modded_nanogpt_records:
88 validation-loss curves in 14 groups, 6 of them single runs), `speedrun` (the two
modded_nanogpt_speedrun validation curves, each a lone run). Rows per table: all cases, then the
sibling cases with 5+ points, lone targets (no sibling) and targets with 2-4 points before the
cut, each on its own. `--lone add` adds every sibling target again, alone in its group, in a
separate call (so it cannot move the other rows).

    python benchmarks/dev_cases.py [--sets luo,pku,modded,speedrun] [--cuts 0.25,0.5,decay]
        [--methods ours,momentum,multipower,last] [--groups REGEX] [--lone add|only] [--json PATH]
    python benchmarks/dev_cases.py --merge part1.json,part2.json   # tables of a run made in parts
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import luo_cases  # noqa: E402
import pku_cases  # noqa: E402
from forecaster import selfcal  # noqa: E402
from forecaster.forecast import Forecaster  # noqa: E402
from forecaster.histories import RunHistory  # noqa: E402

LR_CURVES = HERE.parents[1] / "shared/data/lr_curves"
METHODS = {
    "ours": dict(law="auto"),
    "momentum": luo_cases.METHODS["momentum shared (authors)"],
    "multipower": luo_cases.METHODS["multipower shared (authors)"],
    "last": None,
}
LABELS = {"ours": "ours (auto)", "momentum": "momentum, authors-style (pooled)",
          "multipower": "multi-power, authors-style (pooled)", "last": "last observed value"}
LR_EVERY = 50  # modded-nanogpt logs: LR rows kept every 50 steps (and at every bend), as trackers log
PKU_LR_EVERY = 250  # as trackers log it; pku_cases.py's default
PKU_SMOOTH = 201  # steps in the centred mean that stands for PKU's noise-free loss
# A decay start below this share of the run is the end of warmup (cosine), not a stable phase
# followed by a decay; such runs have no "decay" cut.
MIN_DECAY_SHARE = 0.2


@dataclass
class Run:
    name: str
    steps: np.ndarray  # evaluated steps
    values: np.ndarray  # as logged (the forecaster sees these)
    truth: np.ndarray  # what the final's error is judged against (= values, or smoothed for PKU)
    lr_steps: np.ndarray
    lr_values: np.ndarray
    decay_start: int | None  # last step at the peak LR before a decay, if the schedule has one
    size: float | None = None


def _decay_start(lr_steps: np.ndarray, lr: np.ndarray) -> int | None:
    top = lr >= lr.max() * (1 - 1e-6)
    s = int(lr_steps[np.nonzero(top)[0][-1]])
    return s if MIN_DECAY_SHARE * lr_steps[-1] <= s < lr_steps[-1] else None


def _knots(steps: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """Rows where the LR's slope changes (and the ends): the forecaster interpolates LR rows
    linearly, so these reproduce a piecewise-linear schedule at a fraction of the rows. The
    tolerance absorbs the logs' rounding of the LR, which would otherwise make every row a bend."""
    slope = np.diff(lr) / np.diff(steps)
    bend = ~np.isclose(slope[1:], slope[:-1], rtol=1e-2, atol=1e-6 * lr.max() / steps[-1])
    return np.concatenate([[True], bend, [True]])


def load_luo() -> dict[str, list[Run]]:
    out = {}
    for size in ("25", "100", "400"):
        runs = []
        for n in luo_cases.NAMES:
            s, lr, y = luo_cases.load(size, n)
            s = s.astype(np.int64)
            runs.append(Run(n, s, y, y, s, lr, _decay_start(s, lr)))
        out[f"{size}M"] = runs
    return out


def load_pku() -> dict[str, list[Run]]:
    runs = []
    for n in pku_cases.NAMES:
        s, lr, y = pku_cases.load(n)
        kernel = np.ones(PKU_SMOOTH)
        smooth = np.convolve(y, kernel, "same") / np.convolve(np.ones_like(y), kernel, "same")
        logged = (s % PKU_LR_EVERY == 0) | (s == s[-1])
        runs.append(Run(n, s, y, smooth, s[logged], lr[logged], _decay_start(s, lr)))
    return {"gpt100M": runs}


def _lr_run(name, steps, loss, lr, size=None) -> Run:
    """A validation curve from rows that carry the LR at every change: the step-0 evaluation is
    the loss at initialisation (about 10.8 against 3.3 at the end), which no law models and the
    authors' fits would not take, so it is dropped for every method."""
    have = ~np.isnan(loss) & (steps > 0)
    k = _knots(steps, lr) | (steps % LR_EVERY == 0)
    return Run(name, steps[have], loss[have], loss[have], steps[k], lr[k], _decay_start(steps, lr), size)


def load_modded() -> dict[str, list[Run]]:
    cols: dict[tuple[str, str], list[list[str]]] = {}
    with gzip.open(LR_CURVES / "modded_nanogpt_records/curves.csv.gz", "rt") as fh:
        rd = csv.reader(fh)
        next(rd)
        for g, r, step, lr, loss, size, _ in rd:
            cols.setdefault((g, r), []).append([step, lr, loss or "nan", size or "nan"])
    out: dict[str, list[Run]] = {}
    for (g, r), rows in cols.items():
        a = np.array(rows, dtype=np.float64)
        size = float(a[0, 3]) if np.isfinite(a[0, 3]) else None
        out.setdefault(g, []).append(_lr_run(r, a[:, 0].astype(np.int64), a[:, 2], a[:, 1], size))
    return out


def load_speedrun() -> dict[str, list[Run]]:
    out = {}
    for path in sorted((LR_CURVES / "modded_nanogpt_speedrun").glob("*.csv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        key = "lr" if "lr" in rows[0] else "lr_multiplier"  # the Muon record logs only the multiplier
        s = np.array([int(r["step"]) for r in rows])
        lr = np.array([float(r[key]) for r in rows])
        y = np.array([float(r["val_loss"]) if r["val_loss"] else np.nan for r in rows])
        out[path.stem] = [_lr_run(path.stem, s, y, lr)]
    return out


LOADERS = {"luo": load_luo, "pku": load_pku, "modded": load_modded, "speedrun": load_speedrun}


def _cut_step(run: Run, cut: str) -> int | None:
    if cut == "decay":
        return run.decay_start
    return int(float(cut) * run.lr_steps[-1])


def cases(groups: dict[str, list[Run]], cut: str, alone: bool = False):
    """Histories (one group per case) and per case: (row of the target, target run, kept points,
    tags). Targets with fewer than 2 points before the cut, or none after it, are no case."""
    hs, meta = [], []
    for g, runs in groups.items():
        for target in runs:
            at = _cut_step(target, cut)
            if at is None:
                continue
            keep = target.steps <= at
            if keep.sum() < 2 or keep.all():
                continue
            if alone and len(runs) == 1:
                continue  # already a lone case in the main call
            case = f"{g}/{target.name}@{cut}" + ("/alone" if alone else "")
            for r in runs:
                if r is target:
                    hs.append(RunHistory(r.name, r.steps[keep], r.values[keep], group=case, lr_steps=r.lr_steps,
                                         lr_values=r.lr_values, horizon=r.steps[~keep], size=r.size))
                    row = len(hs) - 1
                elif not alone:
                    hs.append(RunHistory(r.name, r.steps, r.values, group=case, lr_steps=r.lr_steps,
                                         lr_values=r.lr_values, size=r.size))
            tags = {"lone": len(runs) == 1 or alone, "few": int(keep.sum()) <= 4}
            meta.append((row, target, keep, tags, case))
    return hs, meta


def _band(f, hidden, truth) -> dict | None:
    """Coverage of the logged values `truth` at the `hidden` steps and the mean relative width
    there, or None when the forecast does not reach them."""
    idx = np.searchsorted(f.steps, hidden) if len(f.steps) else None
    if f.skipped or idx is None or np.any(idx >= len(f.steps)) or np.any(f.steps[idx] != hidden):
        return None
    p10, p50, p90 = f.p10[idx], f.p50[idx], f.p90[idx]
    return dict(coverage=float(np.mean((truth >= p10) & (truth <= p90))), width=float(np.mean((p90 - p10) / p50)))


def score(method: str, hs, meta, selfcal_grid: list[float] | None = None) -> tuple[list[dict], float]:
    """Per case: error, horizon coverage, mean band width (relative), or unforecast. With
    `selfcal_grid` (ours only), also the coverage and width of the self-calibrated band at each
    shrinkage strength (`forecaster.selfcal`), from one extra pass; its seconds in `selfcal_s`."""
    t0 = time.perf_counter()
    out = None
    cal_grid: dict[str, dict] = {}
    cal_s = 0.0
    if METHODS[method] is not None:
        try:
            fc = Forecaster(**METHODS[method]).fit(hs)
            out = fc.predict()
            if selfcal_grid and method == "ours":
                t1 = time.perf_counter()
                errors = selfcal.sibling_errors(fc)
                cal_s = time.perf_counter() - t1
                cal_grid = {f"{how}:{k:g}": selfcal.factors(errors, k, how)
                            for how in ("q80", "rms") for k in selfcal_grid}
        except Exception as e:  # a crash is a finding: recorded, not patched here
            return [dict(case=c, crashed=f"{type(e).__name__}: {e}", **tags) for _, _, _, tags, c in meta], \
                time.perf_counter() - t0
    rows = []
    for row, run, keep, tags, case in meta:
        hidden, truth, logged = run.steps[~keep], run.truth[~keep], run.values[~keep]
        true3 = truth[-3:].mean()
        rec = dict(case=case, points=int(keep.sum()), **tags)
        if out is None:
            rec.update(error=abs(run.values[keep][-1] / true3 - 1))
        else:
            f = out[row]
            idx = np.searchsorted(f.steps, hidden) if len(f.steps) else None
            if f.skipped or idx is None or np.any(idx >= len(f.steps)) or np.any(f.steps[idx] != hidden):
                rec.update(unforecast=f.skipped or "no forecast at the hidden steps")
            else:
                p10, p50, p90 = f.p10[idx], f.p50[idx], f.p90[idx]
                rec.update(error=abs(p50[-3:].mean() / true3 - 1), law=f.law,
                           coverage=float(np.mean((logged >= p10) & (logged <= p90))),
                           width=float(np.mean((p90 - p10) / p50)))
                if cal_grid:
                    cal = next(iter(cal_grid.values())).get(case)
                    rec.update(siblings=cal.siblings if cal else 0, raw_factor=cal.raw if cal else None,
                               selfcal_s=cal_s, selfcal={
                                   str(k): _band(selfcal.rescale(f, c[case], selfcal.disagreement(fc, row, f))
                                                 if case in c else f, hidden, logged)
                                   for k, c in cal_grid.items()})
        rows.append(rec)
    return rows, time.perf_counter() - t0


SUBSETS = [("all", lambda r: True), ("siblings, 5+ points", lambda r: not r["lone"] and not r["few"]),
           ("lone", lambda r: r["lone"]), ("2-4 points", lambda r: r["few"])]


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" in r]
    err = np.array([r["error"] for r in ok])
    cov = [r["coverage"] for r in ok if "coverage" in r]
    wid = [r["width"] for r in ok if "width" in r]
    return dict(cases=len(rows), forecast=len(ok), crashed=sum("crashed" in r for r in rows),
                unforecast=sum("unforecast" in r for r in rows),
                mean=float(err.mean()) if len(err) else None, worst=float(err.max()) if len(err) else None,
                coverage=float(np.mean(cov)) if cov else None, width=float(np.mean(wid)) if wid else None)


def _pct(x, digits=2):
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _row(cut, sub, m, s, secs) -> str:
    bad = f"{s['unforecast']}" + (f", {s['crashed']} crashed" if s["crashed"] else "")
    return (f"| {cut} | {sub} ({s['cases']}) | {LABELS[m]} | {_pct(s['mean'])} | {_pct(s['worst'])} | "
            f"{_pct(s['coverage'], 0)} | {_pct(s['width'], 1)} | {bad if METHODS[m] else '-'} | {secs:.0f} |")


HEADER = ("| cut | cases | method | mean error % | worst % | p10-p90 coverage % | mean band width % | unforecast | s |\n"
          "|---|---|---|---|---|---|---|---|---|")


def verdict(name: str, summ: dict[tuple[str, str], dict]) -> None:
    """Issue 14's done-means per cut, on all cases: ours against the better (by mean) of the two
    authors-style fits: mean error at most 0.75x of it averaged over the cuts, worst no worse,
    coverage within 70-90 %, no target left unforecast."""
    cuts = list(dict.fromkeys(c for c, _ in summ))
    lines, ratios = [], []
    for cut in cuts:
        ours = summ.get((cut, "ours"))
        base = [(summ[(cut, m)]["mean"], m) for m in ("momentum", "multipower")
                if (cut, m) in summ and summ[(cut, m)]["mean"] is not None]
        if not ours or ours["mean"] is None or not base:
            continue
        b = summ[(cut, min(base)[1])]
        ratios.append(ours["mean"] / b["mean"])
        lines.append(f"| {cut} | {_pct(ours['mean'])} / {_pct(ours['worst'])} | {LABELS[min(base)[1]]}: "
                     f"{_pct(b['mean'])} / {_pct(b['worst'])} | {ratios[-1]:.2f} | "
                     f"{'yes' if ours['worst'] <= b['worst'] else 'no'} | {_pct(ours['coverage'], 0)} | "
                     f"{ours['unforecast'] + ours['crashed']} of {ours['cases']} |")
    if lines:
        print(f"\n{name} against issue 14 (all cases; means over the cases each method forecast):\n\n"
              "| cut | ours mean / worst % | best authors-style fit, mean / worst % | ratio of means | "
              "worst no worse | coverage % | unforecast |\n|---|---|---|---|---|---|---|")
        print("\n".join(lines))
        print(f"\nratio of means averaged over the cuts: {np.mean(ratios):.2f} (target <= 0.75)", flush=True)


def _cal_summary(rows: list[dict], k) -> dict:
    """Coverage and width of the self-calibrated band at shrinkage `k` over `rows`, and the
    seconds of the extra pass."""
    got = [r["selfcal"][k] for r in rows if r.get("selfcal") and r["selfcal"].get(k)]
    return dict(cases=len(rows), forecast=len(got),
                coverage=float(np.mean([g["coverage"] for g in got])) if got else None,
                width=float(np.mean([g["width"] for g in got])) if got else None,
                secs=max([r.get("selfcal_s", 0.0) for r in rows], default=0.0))


def _cal_row(cut, sub, k, rows) -> str:
    c = _cal_summary(rows, k)
    return (f"| {cut} | {sub} ({c['cases']}) | ours + selfcal ({k}) | = | = | {_pct(c['coverage'], 0)} | "
            f"{_pct(c['width'], 1)} | = | +{c['secs']:.0f} |")


def _cal_loss(summ: list[dict]) -> tuple[int, float]:
    """How far a choice is from issue 14's band target over (set, cut) summaries: how many have
    coverage outside 70-90 % as the tables print it (whole percent), then the mean width. A count,
    not a summed distance: a cell no choice brings into range (a lone set, PKU's decay cut) would
    otherwise decide by fractions of a point."""
    out = sum(not 70 <= round(100 * s["coverage"]) <= 90 for s in summ)
    return out, float(np.mean([s["width"] for s in summ]))


def lodo(paths: list[str]) -> None:
    """Leave-one-data-set-out choice of selfcal's shrinkage from --selfcal-grid runs: for each data
    set, the strength whose (coverage outside 70-90 %, mean width) is best on all cuts of the
    other sets, and that strength's coverage and width on the set left out."""
    pooled: dict[tuple, list] = {}
    for p in paths:
        for r in json.loads(Path(p).read_text()):
            if r.get("subset") == "all" and r.get("method") == "ours":
                pooled.setdefault((r["set"], r["cut"]), []).extend(r["cases_detail"])
    grid = sorted({k for rows in pooled.values() for r in rows for k in r.get("selfcal") or {}})
    sets = list(dict.fromkeys(s for s, _ in pooled))
    print("| left out | estimator:shrink chosen on the others | cut | coverage % before | after | width % before "
          "| after |\n"
          "|---|---|---|---|---|---|---|")
    for left in sets:
        others = [key for key in pooled if key[0] != left]
        best = min(grid, key=lambda k: _cal_loss([_cal_summary(pooled[key], k) for key in others])) \
            if others else grid[0]
        for key in [key for key in pooled if key[0] == left]:
            b, c = summarise(pooled[key]), _cal_summary(pooled[key], best)
            print(f"| {left} | {best} | {key[1]} | {_pct(b['coverage'], 0)} | {_pct(c['coverage'], 0)} | "
                  f"{_pct(b['width'], 1)} | {_pct(c['width'], 1)} |")
    every = min(grid, key=lambda k: _cal_loss([_cal_summary(rows, k) for rows in pooled.values()]))
    print(f"\nchosen on every set (the shipped setting): {every}")


def merge(paths: list[str]) -> None:
    """The tables of runs made in parts (say, one data set's groups in two calls), from their
    --json files: the cases of each data set, cut and method pooled, subsets recomputed."""
    pooled: dict[tuple, list] = {}
    secs: dict[tuple, float] = {}
    for p in paths:
        for r in json.loads(Path(p).read_text()):
            if r.get("subset") == "all":
                key = (r["set"], r["cut"], r["method"])
                pooled.setdefault(key, []).extend(r["cases_detail"])
                secs[key] = secs.get(key, 0.0) + r["seconds"]
    for name in dict.fromkeys(k[0] for k in pooled):
        print(f"\n## {name} (merged from {', '.join(paths)})\n\n{HEADER}")
        for (n, cut, m), rows in pooled.items():
            if n != name:
                continue
            for sub, sel in SUBSETS:
                pick = [r for r in rows if sel(r)]
                if pick and (sub == "all" or len(pick) < len(rows)):
                    print(_row(cut, sub, m, summarise(pick), secs[(n, cut, m)]))
        verdict(name, {(c, m): summarise(rows) for (n, c, m), rows in pooled.items() if n == name})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(LOADERS))
    ap.add_argument("--cuts", default="0.25,0.5,decay", help="shares of the planned steps, and/or `decay`")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--groups", help="regex: only groups whose name matches (for quick partial runs)")
    ap.add_argument("--lone", choices=("add", "only"), help="every sibling target again, alone in its group, "
                    "in a separate call: as well as the main cases (add) or instead of them (only)")
    ap.add_argument("--json", help="write the summaries and every case's figures to this file")
    ap.add_argument("--merge", help="comma-separated --json files of partial runs: print their pooled tables")
    ap.add_argument("--selfcal-grid", default="", help="comma-separated shrinkage strengths: add rows of ours "
                    "with the self-calibrated band (forecaster.selfcal) at each, from one extra pass")
    ap.add_argument("--lodo", help="comma-separated --json files made with --selfcal-grid: choose the shrinkage "
                    "on all data sets but one and score it on the one left out, for each")
    a = ap.parse_args()
    grid = [float(k) for k in a.selfcal_grid.split(",") if k]
    if a.lodo:
        return lodo(a.lodo.split(","))
    if a.merge:
        return merge(a.merge.split(","))
    if not LR_CURVES.is_dir():
        sys.exit(f"needs the shared data: {LR_CURVES} not found")
    methods = a.methods.split(",")
    report = []
    for name in a.sets.split(","):
        try:
            groups = LOADERS[name]()
        except Exception as e:  # a data set that cannot be read is a finding too
            print(f"\n## {name}: could not be loaded: {type(e).__name__}: {e}\n", flush=True)
            report.append(dict(set=name, load_error=f"{type(e).__name__}: {e}"))
            continue
        if a.groups:
            groups = {g: r for g, r in groups.items() if re.search(a.groups, g)}
        print(f"\n## {name}: {sum(map(len, groups.values()))} runs in {len(groups)} groups\n")
        print(HEADER, flush=True)
        for cut in a.cuts.split(","):
            passes = ([("", cases(groups, cut))] if a.lone != "only" else []) + \
                ([("alone: ", cases(groups, cut, alone=True))] if a.lone else [])
            for prefix, (hs, meta) in passes:
                if not meta:
                    continue
                for m in methods:
                    rows, secs = score(m, hs, meta, grid)
                    for sub, sel in SUBSETS if not prefix else [("siblings dropped", lambda r: True)]:
                        pick = [r for r in rows if sel(r)]
                        if not pick or (sub not in ("all", "siblings dropped") and len(pick) == len(rows)):
                            continue
                        s = summarise(pick)
                        report.append(dict(set=name, cut=cut, subset=prefix + sub, method=m, seconds=secs, **s,
                                           **({"cases_detail": pick} if sub == "all" or prefix else {})))
                        print(_row(cut, prefix + sub, m, s, secs), flush=True)
                        for k in [f"{how}:{k:g}" for how in ("q80", "rms") for k in grid] if m == "ours" else []:
                            print(_cal_row(cut, prefix + sub, k, pick), flush=True)
                    if a.json:  # after every method, so that a long run stopped part way keeps its figures
                        Path(a.json).write_text(json.dumps(report, indent=1, default=float))
        verdict(name, {(r["cut"], r["method"]): r for r in report
                       if r.get("set") == name and r.get("subset") == "all"})


if __name__ == "__main__":
    main()
