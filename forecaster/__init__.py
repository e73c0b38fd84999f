"""forecaster: forecast every training run in your experiment tracker.

The public API, for notebooks and scripts (docs/api.md)::

    from forecaster import Forecaster, read_histories
    forecasts = Forecaster().fit_predict(read_histories("runs.csv"))  # or a pandas DataFrame
    forecasts.to_frame()

Names are imported on first use: ``import forecaster`` stays cheap (no torch) for the command line.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# the name pip knows it by (pyproject [project].name): "forecaster" on PyPI is an unrelated project
DISTRIBUTION = "run-forecaster"

# public name -> (module, attribute there)
_LAZY = {
    "Forecaster": ("forecaster.forecast", "Forecaster"),
    "ForecastSet": ("forecaster.results", "ForecastSet"),
    "Diagnostics": ("forecaster.results", "Diagnostics"),
    "RunHistory": ("forecaster.histories", "RunHistory"),
    "RunForecast": ("forecaster.histories", "RunForecast"),
    "read_histories": ("forecaster.inputs", "read_histories"),
    "parse_schedule": ("forecaster.schedules", "parse"),
    "fit_scaling": ("forecaster.scaling", "fit_scaling"),
    "run_backtest": ("forecaster.backtest", "run_backtest"),
    "clone": ("forecaster.params", "clone"),
    "ForecasterError": ("forecaster.errors", "ForecasterError"),
    "InputError": ("forecaster.errors", "InputError"),
    "NotFittedError": ("forecaster.errors", "NotFittedError"),
}

__all__ = ["Diagnostics", "ForecastSet", "Forecaster", "ForecasterError", "InputError", "NotFittedError",
           "RunForecast", "RunHistory", "clone", "fit_scaling", "parse_schedule", "read_histories",
           "run_backtest"]

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.backtest import run_backtest
    from forecaster.errors import ForecasterError, InputError, NotFittedError
    from forecaster.forecast import Forecaster
    from forecaster.histories import RunForecast, RunHistory
    from forecaster.inputs import read_histories
    from forecaster.params import clone
    from forecaster.results import Diagnostics, ForecastSet
    from forecaster.scaling import fit_scaling
    from forecaster.schedules import parse as parse_schedule


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'forecaster' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
