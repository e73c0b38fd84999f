"""Histories from what a notebook holds: a CSV path, a pandas DataFrame or an Arrow table.

A table is read by the CSV reader itself (`csvio.read_histories`, from a temporary file), so it
takes exactly the columns, repairs and errors a history CSV does; neither pandas nor pyarrow is
imported unless a table of theirs is given.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from forecaster import csvio
from forecaster.errors import InputError
from forecaster.histories import RunHistory

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

    from forecaster.csvio import ReadReport

# what `read_histories` and `Forecaster.fit` accept
HistorySource = Union[Sequence[RunHistory], "pd.DataFrame", "pa.Table", str, "os.PathLike[str]"]


def read_histories(source: HistorySource, metric: str = "loss", *, name: str = "run") -> list[RunHistory]:
    """Histories from a CSV file or folder (a path), a pandas DataFrame or an Arrow table with the
    columns of a history CSV (``step`` and the metric; ``run``, ``group``, ``lr``, ``size``
    optional); `name` is the run and group of a table without ``run`` and ``group`` columns. What
    reading repaired (NaN values, duplicate steps) is reported as warnings; bad input raises `InputError`."""
    histories, report = read_with_report(source, metric, name=name)
    for line in report.warnings():
        warnings.warn(line, stacklevel=2)
    return histories


def read_with_report(source: HistorySource, metric: str = "loss", *, name: str = "run"
                     ) -> tuple[list[RunHistory], ReadReport]:
    """`read_histories`, with the reader's report instead of warnings."""
    if isinstance(source, (str, os.PathLike)):
        return csvio.read_histories(Path(source), metric)
    kind = _table_kind(source)
    if kind is None:
        raise InputError(f"cannot read histories from a {type(source).__name__}: give a CSV path, a pandas "
                         "DataFrame or an Arrow table")
    return _read_table(source, kind, metric, name)


def as_histories(source: HistorySource, metric: str = "loss") -> list[RunHistory]:
    """A new list of the histories in `source`: `RunHistory` objects as they are, anything else read."""
    if isinstance(source, (str, os.PathLike)) or _table_kind(source) is not None:
        return read_histories(source, metric)
    if not isinstance(source, Iterable) or isinstance(source, (Mapping, bytes)):
        raise InputError(f"cannot fit a {type(source).__name__}: give a list of RunHistory, a pandas DataFrame, "
                         "an Arrow table or a CSV path")
    out = list(source)
    bad = next((h for h in out if not isinstance(h, RunHistory)), None)
    if bad is not None:
        raise InputError(f"expected RunHistory objects, got a {type(bad).__name__}")
    return out


def _table_kind(source: Any) -> str | None:
    """'DataFrame' or 'Arrow table' by the object's type, without importing either library."""
    module = type(source).__module__.split(".")[0]
    if module == "pandas" and hasattr(source, "to_csv") and hasattr(source, "columns"):
        return "DataFrame"
    if module == "pyarrow" and hasattr(source, "column_names") and hasattr(source, "to_batches"):
        return "Arrow table"
    return None


def _read_table(table: Any, kind: str, metric: str, name: str) -> tuple[list[RunHistory], ReadReport]:
    with tempfile.TemporaryDirectory(prefix="forecaster-") as tmp:
        path = Path(tmp) / f"{name}.csv"
        if kind == "DataFrame":
            table.to_csv(path, index=False)  # floats as repr: they read back to the bit
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, str(path))
        try:
            histories, report = csvio.read_histories(path, metric)
        except InputError as exc:
            raise InputError(_relabel(str(exc), str(path), kind)) from None
    for h in histories:
        h.meta["source"] = kind
        # the table's row (0-based) of the run's first row: the file's header is line 1
        h.meta["row"] = h.meta.pop("line") - 2
    return histories, report


def _relabel(message: str, path: str, kind: str) -> str:
    """A reader's message about the temporary file, told about the table: its line N is row N - 2."""
    message = re.sub(re.escape(path) + r":(\d+):", lambda m: f"{kind} row {int(m.group(1)) - 2}:", message)
    return message.replace(path, kind)
