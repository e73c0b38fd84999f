"""What `forecast backtest --early-stop` runs: read the CSV, replay, print a table or JSON."""

from __future__ import annotations

import sys
from typing import Any

from forecaster.earlystop.backtest import run_early_stop
from forecaster.earlystop.report import markdown
from forecaster.earlystop.settings import EarlyStopSettings


def cli_early_stop(input_path: str, metric: str, law: str = "auto", device: str | None = None, seed: int = 0,
                   as_json: bool = False, settings: EarlyStopSettings | None = None) -> dict[str, Any]:
    """Read the CSV, run the backtest, print a markdown table (or JSON) and return the result."""
    from forecaster import csvio

    s = settings or EarlyStopSettings()
    s.law, s.seed = law, seed
    s.device = None if device in (None, "auto") else device
    histories, report = csvio.read_histories(input_path, metric)
    for line in report.warnings():
        print(f"warning: {line}", file=sys.stderr)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_early_stop(histories, s, progress=progress)
    result = {"input": str(input_path), "metric": metric, **result}
    if as_json:
        csvio.write_json(result, None)
    else:
        print(markdown(result))
        for n in result["notes"][:5]:
            print(f"note: {n}", file=sys.stderr)
    return result
