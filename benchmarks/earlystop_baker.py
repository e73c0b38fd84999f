"""Early-stop backtest on Baker et al. (2018) curves: convert each CSV, run the real command, tabulate.

    .venv/bin/python benchmarks/earlystop_baker.py [--sets lstm_ptb,metaqnn_cifar10] [--out DIR] [--limit N]
        [--law NAME] [--context K] [--law-score interval|log|crps] [--score-alpha A] [--score-from N]

Each set becomes `run,group,step,<metric>` rows (accuracy -> error = 1 - accuracy; LSTM perplexity
as is), one group per set in file order, then goes through
`forecast backtest --early-stop --input CSV --metric <metric> --json`. JSON results land in --out.
`--law NAME` is the CLI's `--law` (one law for every prefix instead of the per-checkpoint choice).
The other options are experiments, not CLI options, and run the same replay in-process:
`--context K` fits each running run jointly with its K most recent finished siblings
(EarlyStopSettings.context); `--law-score`, `--score-alpha` and `--score-from` change how the
finished runs judge the candidate laws (EarlyStopSettings.law_score, law_score_alpha,
law_score_from).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from earlystop_data import SETS, write_backtest_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["metaqnn_cifar10", "deep_resnets_cifar10", "lstm_ptb", "deep_resnets_tinyimagenet", "metaqnn_svhn"]


def run_set(name: str, out: Path, limit: int | None, law: str = "auto", experiment: dict | None = None) -> dict:
    csv_path = out / f"{name}.csv"
    metric = write_backtest_csv(name, csv_path, limit)
    if experiment:
        from forecaster.earlystop import EarlyStopSettings, cli_early_stop

        t0 = time.perf_counter()
        result = cli_early_stop(str(csv_path), metric, law=law, as_json=False,
                                settings=EarlyStopSettings(**experiment))
        result["wall_seconds"] = time.perf_counter() - t0
        (out / f"earlystop_{name}.json").write_text(json.dumps(result, indent=2))
        return result
    cmd = [str(ROOT / ".venv" / "bin" / "forecast"), "backtest", "--early-stop", "--input", str(csv_path),
           "--metric", metric, "--law", law, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout)
    result["wall_seconds"] = time.perf_counter() - t0
    (out / f"earlystop_{name}.json").write_text(json.dumps(result, indent=2))
    return result


def law_shares(res: dict) -> str:
    """Share of our rule's calibrated checks that used each law (chosen per checkpoint by the replay)."""
    n: dict[str, int] = {}
    for per in (res.get("law_choice") or {}).values():
        for law, k in per.items():
            n[law] = n.get(law, 0) + k
    total = sum(n.values())
    return ", ".join(f"{law} {k / total:.0%}" for law, k in sorted(n.items())) if total else "-"


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| data set | rule | compute saved | speed-up | regret | false-stop rate | best run stopped | "
             "90 % interval coverage | Brier |", "|---|---|---|---|---|---|---|---|---|"]
    for label, res in rows:
        for rule, r in [("ours", res)] + list(res["baselines"].items()):
            cal = r.get("calibration") or {}
            cov, brier = cal.get("interval90_coverage"), cal.get("brier")
            lines.append(f"| {label} | {rule} | {r['compute_saved']:.1%} | {r['speedup'] or 0:.2f}x | "
                         f"{r['regret']:.2%} | {r['false_stop_rate']:.1%} | {'yes' if r['best_run_stopped'] else 'no'} | "
                         f"{'-' if cov is None else f'{cov:.1%}'} | {'-' if brier is None else f'{brier:.3f}'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(ORDER))
    ap.add_argument("--out", default="/tmp/forecaster-earlystop")
    ap.add_argument("--limit", type=int, default=None, help="first N runs of each set only")
    ap.add_argument("--law", default="auto", help="the CLI's --law (auto: chosen per group and checkpoint)")
    ap.add_argument("--context", type=int, default=0, help="finished siblings fitted with each running run")
    ap.add_argument("--law-score", default=None, choices=["interval", "log", "crps"],
                    help="how finished runs judge the candidate laws (default: interval)")
    ap.add_argument("--score-alpha", type=float, default=None, help="interval score of the 1 - A interval")
    ap.add_argument("--score-from", type=int, default=None, help="finished runs scored before laws are compared")
    a = ap.parse_args()
    experiment = {k: v for k, v in (("context", a.context or None), ("law_score", a.law_score),
                                    ("law_score_alpha", a.score_alpha), ("law_score_from", a.score_from))
                  if v is not None}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.sets.split(","):
        res = run_set(name, out, a.limit, a.law, experiment)
        print(f"{SETS[name]}: {res['runs']} runs, {res['forecaster_calls']} forecaster calls, "
              f"{res['wall_seconds']:.0f} s; law of the calibrated checks: {law_shares(res)}",
              file=sys.stderr, flush=True)
        rows.append((SETS[name], res))
        print(table([(SETS[name], res)]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
