"""Forecasts written as CSV: ``run, step, lr, p50, p10, p90`` per horizon step, through Arrow when it is there."""

from __future__ import annotations

import csv
import io
import math
from typing import IO

import numpy as np

from forecaster.histories import RunForecast

OUTPUT_COLUMNS = ("run", "step", "lr", "p50", "p10", "p90")


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.8g}"


def _significant(x: np.ndarray, digits: int = 8) -> np.ndarray:
    """x rounded to `digits` significant digits, as the nearest double to that decimal (so the
    shortest repr Arrow prints is the decimal itself, as %.8g would write it)."""
    with np.errstate(all="ignore"):
        k = (digits - 1) - np.floor(np.log10(np.abs(x)))
        ok = np.isfinite(k) & (np.abs(k) <= 22)  # powers of ten up to 1e22 are exact doubles
        k = np.where(ok, k, 0.0)
        scale = 10.0 ** np.abs(k)
        # integer / exact power of ten, or integer * it: one correctly rounded operation
        r = np.where(k >= 0, np.round(x * scale) / scale, np.round(x / scale) * scale)
    return np.where(ok, r, x)


def _write_arrow(forecasts: list[RunForecast], out: IO[str], header: bool) -> int | None:
    """The rows of `write_forecasts` through Arrow's CSV writer (C++; the per-row formatting in
    Python was several seconds of a 10,000-run call); None where pyarrow is absent."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    shown = [f for f in forecasts if not f.skipped and len(f.steps)]
    counts = np.array([len(f.steps) for f in shown], dtype=np.int64)
    n = int(counts.sum())
    names = pa.array([f.run for f in shown], pa.string())
    run = pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.arange(len(shown), dtype=np.int32), counts)),
                                         names).cast(pa.string())
    cols = [run, pa.array(np.concatenate([np.asarray(f.steps, dtype=np.int64) for f in shown]) if n
                          else np.zeros(0, dtype=np.int64))]
    for name in OUTPUT_COLUMNS[2:]:
        x = np.concatenate([np.asarray(getattr(f, name), dtype=np.float64) for f in shown]) if n else np.zeros(0)
        cols.append(pa.array(_significant(x), mask=~np.isfinite(x)))  # non-finite: an empty cell
    sink = io.BytesIO()
    # Arrow's "needed" quotes every string; plain names are written bare, as the csv module does
    plain = not any(c in f.run for f in shown for c in ',"\n\r')
    pcsv.write_csv(pa.table(cols, names=list(OUTPUT_COLUMNS)), sink,
                   pcsv.WriteOptions(include_header=False, quoting_style="none" if plain else "needed"))
    if header:  # Arrow quotes its header
        out.write(",".join(OUTPUT_COLUMNS) + "\n")
    out.write(sink.getvalue().decode("utf-8").replace("\r\n", "\n"))
    return n


def write_forecasts(forecasts: list[RunForecast], out: IO[str], header: bool = True) -> int:
    """Write ``run, step, lr, p50, p10, p90`` for every horizon step; returns the rows written.
    Values have 8 significant digits; `header=False` continues a file (`predict`'s chunks)."""
    n = _write_arrow(forecasts, out, header)
    if n is not None:
        return n
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(OUTPUT_COLUMNS)
    n = 0
    for f in forecasts:
        if f.skipped or not len(f.steps):
            continue
        cols = np.stack([np.asarray(c, dtype=np.float64) for c in (f.lr, f.p50, f.p10, f.p90)], 1)
        steps = np.asarray(f.steps).tolist()
        if np.isfinite(cols).all() and "," not in f.run and '"' not in f.run and "\n" not in f.run:
            # one format per row: writing is a visible share of a 1,000-run call
            out.write("".join(f"{f.run},{s},{a:.8g},{b:.8g},{c:.8g},{d:.8g}\n"
                              for s, (a, b, c, d) in zip(steps, cols.tolist())))
        else:  # quoting and empty cells for non-finite values (no LR known)
            w.writerows((f.run, s, *(_fmt(x) for x in row)) for s, row in zip(steps, cols.tolist()))
        n += len(steps)
    return n
