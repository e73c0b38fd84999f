"""The `forecast` command line: one click group; each concept's module adds its own commands."""

from __future__ import annotations

import importlib
import sys

import click

from forecaster import __version__

# "module:attribute" of every command or sub-group, imported when the group is built.
_COMMANDS = [
    "forecaster.predict_cli:predict",
    "forecaster.predict_cli:backtest",
    "forecaster.scaling.cli:scaling",
    "forecaster.sync_cli:sync",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forecast")
def main() -> None:
    """Forecast training runs from their loss histories and learning-rate schedules.

    \b
    predict   fit per-run laws to a CSV of histories and forecast the rest of each run
    backtest  hide the tail of finished runs and measure how well it is forecast
    scaling   fit cross-run scaling laws (Chinchilla, over-training) and predict bigger runs
    sync      read runs from a tracker (MLflow, W&B), forecast them, write the forecasts back
    """


for _entry in _COMMANDS:
    _module, _attr = _entry.split(":")
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
