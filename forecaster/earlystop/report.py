"""The early-stop backtest's result as a markdown table: our rule and each baseline, one row each."""

from __future__ import annotations

from typing import Any


def markdown(result: dict[str, Any]) -> str:
    """A table of the result: one row for our rule, one per baseline."""
    st = result["settings"]
    rows = [(f"forecaster (P(final < best x {1 + st['margin']:g}) < {st['delta']:g}, group-wide and local)", result)]
    rows += list(result["baselines"].items())
    head = ("| rule | compute saved | speed-up | regret | false-stop rate | best run stopped | stopped | "
            "90% interval coverage |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows:
        cal = r.get("calibration") or {}
        cov = cal.get("interval90_coverage")
        lines.append(f"| {name} | {r['compute_saved']:.1%} | {r['speedup'] or float('inf'):.2f}x | "
                     f"{r['regret']:.2%} | {r['false_stop_rate']:.1%} | {r['best_runs_stopped']} | {r['stopped']} | "
                     f"{'-' if cov is None else f'{cov:.1%}'} |")
    return "\n".join(lines)
