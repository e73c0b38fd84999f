"""Early-stop backtest on the LR-schedule curves (../shared/data/lr_curves): the case where equal-step
pruners go wrong, since a constant-LR prefix looks worse than a cosine prefix at the same step.

    .venv/bin/python benchmarks/earlystop_lr.py [--out DIR]

Groups: Luo et al. 25M / 100M / 400M (9 schedules each, files in name order), the PKU 100M GPT
(cosine, 8-1-1 step, WSD; raw per-step loss) and the two modded-nanogpt runs (val loss, LR
multiplier as lr). Runs the real `forecast backtest --early-stop --input CSV --json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from earlystop_baker import table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT.parent / "shared" / "data" / "lr_curves"


def _rows(path: Path, loss: str, lr: str):
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            v, l_ = r.get(loss, ""), r.get(lr, "")
            v = float(v) if v not in ("", None) and math.isfinite(float(v)) else None
            l_ = float(l_) if l_ not in ("", None) and math.isfinite(float(l_)) else None
            if v is not None or l_ is not None:
                yield int(float(r["step"])), l_, v


def write_csv(out: Path) -> Path:
    """All LR-curve groups as one backtest CSV (run, group, step, lr, loss)."""
    sources = []
    for size in ("csv_25", "csv_100", "csv_400"):
        for f in sorted((LR / "luo2025_multipowerlaw" / size).glob("*.csv")):
            sources.append((f"luo-{size[4:]}M", f"luo-{size[4:]}M/{f.stem}", f, "loss", "lr"))
    for f in sorted((LR / "pku_tdlt_gpt100M_20B").glob("*.csv")):
        sources.append(("pku-100M", f"pku-100M/{f.stem}", f, "loss", "lr"))
    for f in sorted((LR / "modded_nanogpt_speedrun").glob("*.csv")):
        sources.append(("modded-nanogpt", f"modded-nanogpt/{f.stem}", f, "val_loss", "lr_multiplier"))
    path = out / "lr_curves_earlystop.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "lr", "loss"])
        for group, run, f, loss, lr in sources:
            for step, l_, v in _rows(f, loss, lr):
                w.writerow([run, group, step, "" if l_ is None else repr(l_), "" if v is None else repr(v)])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/forecaster-earlystop")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_csv(out)
    t0 = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "forecast"), "backtest", "--early-stop", "--input", str(path),
                           "--metric", "loss", "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    res = json.loads(proc.stdout)
    res["wall_seconds"] = time.perf_counter() - t0
    (out / "earlystop_lr_curves.json").write_text(json.dumps(res, indent=2))
    print(f"{res['runs']} runs in {res['group_count']} groups, {res['forecaster_calls']} forecaster calls, "
          f"{res['wall_seconds']:.0f} s", file=sys.stderr)
    print(table([("LR-schedule curves", res)]))
    for g in res.get("groups") or []:
        print(g, file=sys.stderr)


if __name__ == "__main__":
    main()
