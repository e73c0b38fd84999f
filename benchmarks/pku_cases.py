"""evaluation.md's per-run protocol on the PKU curves, through the `forecast predict` command itself.

Three 100M-parameter runs (cosine, WSD, 8-1-1 step decay; the raw per-step training loss, so every
point is noisy), each in turn the target: cut at a share of its steps, its metric blanked after
the cut, its LR rows kept (logged every `--lr-every` steps, as trackers log them); the two
siblings stay complete. One `group` per case; all cases of a cutoff in one CSV and one
`forecast predict` call, exactly as a user would run it. The baselines of evaluation.md run
in-process on the same cases: the last observed value, and the momentum and multi-power laws
fitted as their authors fit them (one parameter set per group, every point).

Truth, as evaluation.md defines it: the mean of the target's last 3 values; since those are single
noisy steps, the table also gives the error against the mean of the last 200 steps.

    python benchmarks/pku_cases.py [--cutoffs 0.25,0.5] [--lr-every 250] [--law auto] [--no-follow-siblings]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from forecaster.csvio import read_histories  # noqa: E402
from forecaster.forecast import Forecaster  # noqa: E402

DATA = REPO.parent / "shared/data/lr_curves/pku_tdlt_gpt100M_20B"
NAMES = ("cosine", "wsd", "step811")


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with (DATA / f"{name}.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh)]
    cols = (np.array([float(r[k]) for r in rows]) for k in ("step", "lr", "loss"))
    step, lr, loss = cols
    return step.astype(np.int64), lr, loss


def write_cases(path: Path, cut: float, lr_every: int, data: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One CSV, one group per target; returns each case's hidden steps and values."""
    hidden = {}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "lr", "loss"])
        for target in NAMES:
            group = f"{target}@{cut:g}"
            for name, (step, lr, loss) in data.items():
                last = step[-1] * cut if name == target else np.inf
                logged_lr = (step % lr_every == 0) | (step == step[-1])
                for s, a, y, has_lr in zip(step.tolist(), lr.tolist(), loss.tolist(), logged_lr.tolist()):
                    seen = s <= last  # hidden rows stay, metric blanked: the forecast is reported there
                    w.writerow([f"{group}/{name}", group, s, f"{a:.8g}" if has_lr else "",
                                f"{y:.6f}" if seen else ""])
            step, _, loss = data[target]
            keep = step > step[-1] * cut
            hidden[f"{group}/{target}"] = (step[keep], loss[keep])
    return hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoffs", default="0.25,0.5")
    ap.add_argument("--lr-every", type=int, default=250)
    ap.add_argument("--law", default="auto")
    ap.add_argument("--no-follow-siblings", action="store_true",
                    help="pass --no-follow-siblings to `forecast predict` (smooth law forecasts)")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the shared data: {DATA} not found")
    data = {n: load(n) for n in NAMES}
    print(f"`forecast predict --law {a.law}`, LR rows every {a.lr_every} steps\n")
    print("| cutoff | target | law | truth (last 3) | p50 | error % | error vs last-200 mean % | "
          "truth in [p10, p90] | horizon coverage % |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = []
    for cut in (float(c) for c in a.cutoffs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            src, out, js = Path(tmp) / "cases.csv", Path(tmp) / "out.csv", Path(tmp) / "summary.json"
            hidden = write_cases(src, cut, a.lr_every, data)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "forecaster.cli", "predict", "--input", str(src),
                                   "--output", str(out), "--summary", str(js), "--law", a.law]
                                  + (["--no-follow-siblings"] if a.no_follow_siblings else []),
                                  cwd=REPO, capture_output=True, text=True)
            secs = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"forecast predict failed: {proc.stderr.strip()}")
            laws = {r["run"]: r["law"] for r in json.loads(js.read_text())["runs"]}
            hist, _ = read_histories(src)  # the same cases, for the in-process baselines
            with out.open() as fh:
                rows = list(csv.DictReader(fh))
        by_run: dict[str, dict[int, tuple[float, float, float]]] = {}
        for r in rows:
            by_run.setdefault(r["run"], {})[int(r["step"])] = (float(r["p50"]), float(r["p10"]), float(r["p90"]))
        errs, errs200, cover = [], [], []
        for run, (steps, values) in hidden.items():
            fc = by_run[run]
            at = np.array([fc[int(s)] for s in steps])
            truth3, pred3 = values[-3:].mean(), at[-3:, 0].mean()
            truth200 = values[-200:].mean()
            e, e200 = abs(pred3 / truth3 - 1), abs(pred3 / truth200 - 1)
            inside = float(at[-3:, 1].mean() <= truth3 <= at[-3:, 2].mean())
            cov = np.mean((values >= at[:, 1]) & (values <= at[:, 2]))
            errs.append(e), errs200.append(e200), cover.append(cov)
            print(f"| {cut:g} | {run.split('/')[-1]} | {laws[run]} | {truth3:.4f} | {pred3:.4f} | {100 * e:.2f} | "
                  f"{100 * e200:.2f} | {'yes' if inside else 'no'} | {100 * cov:.0f} |")
        summary.append((cut, "`forecast predict` (ours)", np.mean(errs), np.mean(errs200), np.mean(cover), secs))
        # evaluation.md's baselines on the same cases, in-process: the last observed value, and
        # each law fitted the way its authors fit it (one parameter set per group, every point)
        index = {h.run: i for i, h in enumerate(hist)}
        last = [abs(hist[index[r]].values[-1] / v[-3:].mean() - 1) for r, (_, v) in hidden.items()]
        summary.append((cut, "last value", np.mean(last), np.nan, np.nan, 0.0))
        for law in ("momentum", "multipower"):
            t0 = time.perf_counter()
            out = Forecaster(law=law, pool=1e8, skip_early=0.0, follow_siblings=False).fit(hist).predict()
            e3, e200 = [], []
            for r, (steps, values) in hidden.items():
                f = out[index[r]]
                pred = f.p50[np.searchsorted(f.steps, steps[-3:])].mean()
                e3.append(abs(pred / values[-3:].mean() - 1)), e200.append(abs(pred / values[-200:].mean() - 1))
            summary.append((cut, f"{law} shared (authors)", np.mean(e3), np.mean(e200), np.nan,
                            time.perf_counter() - t0))
    print("\n| cutoff | method | mean error % (last 3) | mean error % (last 200) | horizon coverage % | seconds |")
    print("|---|---|---|---|---|---|")
    for cut, name, e, e200, cov, secs in summary:
        cells = [f"{100 * x:.2f}" if np.isfinite(x) else "-" for x in (e, e200)]
        print(f"| {cut:g} | {name} | {cells[0]} | {cells[1]} | "
              f"{'-' if not np.isfinite(cov) else f'{100 * cov:.0f}'} | {secs:.0f} |")


if __name__ == "__main__":
    main()
