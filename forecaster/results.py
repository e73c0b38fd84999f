"""What `Forecaster.predict` returns: one `RunForecast` per run, with array and DataFrame views and
the fit's diagnostics. pandas is imported only by `to_frame` (the optional extra ``pandas``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from forecaster.histories import BAND_LEVELS, RunForecast, quantile_name

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class Diagnostics:
    """How one run's forecast came about: the law, whether its group's fit converged and in how many
    iterations, and the notes the forecast carries (why it was skipped, when it was)."""

    run: str
    law: str | None = None
    converged: bool | None = None  # None: the run was not fitted
    iterations: int | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


class ForecastSet(Sequence[RunForecast]):
    """The forecasts of a `Forecaster.predict` call, in the order of the fitted histories.

    A sequence of `RunForecast` (index, iterate, ``len``), plus ``final`` (each run's median final
    value), ``diagnostics`` (per run) and ``to_frame()`` (one row per run and horizon step).
    """

    def __init__(self, forecasts: Iterable[RunForecast], diagnostics: Iterable[Diagnostics] | None = None,
                 levels: Sequence[float] = BAND_LEVELS) -> None:
        self._items = list(forecasts)
        self.levels = tuple(levels)
        self.diagnostics: list[Diagnostics] = (
            list(diagnostics) if diagnostics is not None
            else [Diagnostics(f.run, f.law, notes=list(f.notes), skipped=f.skipped) for f in self._items])

    @overload
    def __getitem__(self, index: int) -> RunForecast: ...

    @overload
    def __getitem__(self, index: slice) -> ForecastSet: ...

    def __getitem__(self, index: int | slice) -> RunForecast | ForecastSet:
        if isinstance(index, slice):
            return ForecastSet(self._items[index], self.diagnostics[index], self.levels)
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        done = sum(1 for f in self._items if f.skipped is None and len(f.steps))
        return f"ForecastSet({len(self)} runs, {done} forecast, levels {', '.join(f'{x:g}' for x in self.levels)})"

    @property
    def runs(self) -> list[str]:
        """The run ids, in order."""
        return [f.run for f in self._items]

    @property
    def final(self) -> np.ndarray:
        """Each run's median forecast at its last horizon step (NaN where skipped or nothing to forecast)."""
        return np.array([np.nan if f.final is None else f.final for f in self._items], dtype=np.float64)

    @property
    def skipped(self) -> dict[str, str]:
        """Why each skipped run was skipped, by run id."""
        return {f.run: f.skipped for f in self._items if f.skipped is not None}

    def to_frame(self) -> pd.DataFrame:
        """One row per run and horizon step: run, group, step, lr, then the quantiles (``p50`` first,
        then the other levels ascending, each named ``p<percent>``). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - without the extra
            raise ImportError("ForecastSet.to_frame needs pandas: pip install 'run-forecaster[pandas]'") from None
        others = sorted(level for level in self.levels if level != 0.5)
        cols: dict[str, list[Any]] = {"run": [], "group": [], "step": [], "lr": [], "p50": []}
        cols.update({quantile_name(level): [] for level in others})
        for f in self._items:
            if f.skipped is not None or not len(f.steps):
                continue
            n = len(f.steps)
            cols["run"].append(np.full(n, f.run, dtype=object))
            cols["group"].append(np.full(n, f.group, dtype=object))
            cols["step"].append(np.asarray(f.steps, dtype=np.int64))
            cols["lr"].append(np.asarray(f.lr, dtype=np.float64))
            cols["p50"].append(np.asarray(f.p50, dtype=np.float64))
            for level in others:
                cols[quantile_name(level)].append(np.asarray(f.quantile(level), dtype=np.float64))
        empty = {"run": object, "group": object, "step": np.int64}
        return pd.DataFrame({name: np.concatenate(parts) if parts else np.zeros(0, dtype=empty.get(name, np.float64))
                             for name, parts in cols.items()})
