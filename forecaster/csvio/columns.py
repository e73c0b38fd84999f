"""A history table's columns parsed and validated into per-row arrays, whatever read the table.

The cells of a column come either as strings (one per row, empty = absent) or already parsed:
``(values, present)`` for a numeric column, ``(labels, codes)`` for ``run`` / ``group``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.csvio.report import ReadReport
from forecaster.errors import InputError


@dataclass
class Rows:
    """One table's usable rows (a non-finite step dropped), as parallel arrays; labels are coded."""

    source: Path | str  # the file (or what stands for it) that error messages and `meta` name
    runs: tuple[np.ndarray, np.ndarray]  # (labels, code of each row)
    groups: tuple[np.ndarray, np.ndarray]  # (labels, code of each row)
    step: np.ndarray  # int64
    value: np.ndarray
    has_value: np.ndarray
    lr: np.ndarray
    has_lr: np.ndarray
    lines: np.ndarray  # each row's line in the source, for error messages and `meta`
    size: np.ndarray
    has_size: np.ndarray


def resolve_columns(header: list[str], metric: str, path: Path | str) -> dict[str, str]:
    """The header name that holds each column the reader knows, keyed by the name it knows it by.

    An exact name wins; otherwise the one header name equal to it ignoring case (``Step``,
    ``LR``, ``Loss``), and for the step W&B's ``_step`` as well. Two names that differ only in
    case leave it open which one is meant: that is an error, not a guess.
    """
    wanted = {"step": ("step", "_step"), metric: (metric,), "lr": ("lr",), "run": ("run",),
              "group": ("group",), "size": ("size",)}
    out: dict[str, str] = {}
    for known, aliases in wanted.items():
        if known in header:
            out[known] = known
            continue
        for alias in aliases:
            hits = [h for h in header if h.lower() == alias.lower()]
            if len(hits) > 1:
                raise InputError(f"{path}: columns {', '.join(hits)} would all be read as {known!r} "
                                 "(names match ignoring case); rename all but one")
            if hits:
                out[known] = hits[0]
                break
    return out


def require_columns(header: list[str], metric: str, path: Path | str, n_rows: int) -> dict[str, str]:
    """`resolve_columns`, fatal when the step or the metric column is missing or there are no rows."""
    names = resolve_columns(header, metric, path)
    missing = [c for c in ("step", metric) if c not in names]
    if missing:
        have = ", ".join(header) if any(header) else "none"
        labels = ["step (or _step)" if c == "step" else c for c in missing]
        raise InputError(f"{path}: missing column{'s' * (len(missing) > 1)} {', '.join(labels)}; names match "
                         f"ignoring case (columns found: {have})")
    if not n_rows:
        raise InputError(f"{path}: empty input (a header and no data rows)")
    return names


def parse_numbers(cells: Any, column: str, path: Path | str, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse a string column: (float values, present mask); empty cells are absent, bad text is fatal."""
    if isinstance(cells, tuple):  # parsed by pyarrow
        return cells
    present = cells != ""
    filled = np.where(present, cells, "0")
    try:
        values = filled.astype(np.float64)
    except ValueError:
        for cell, line in zip(filled, lines):
            try:
                float(cell)
            except ValueError:
                raise InputError(f"{path}:{line}: column {column!r} has {str(cell)!r}, not a number") from None
        raise  # pragma: no cover - astype and float() agree
    return values, present


def coded(cells: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels, code of each row) of a string column: pyarrow's dictionary encoding, or the
    csv-module path's strings factorised."""
    if isinstance(cells, tuple):
        return cells
    labels, codes = np.unique(cells, return_inverse=True)
    return labels, codes.reshape(-1).astype(np.int64)


def parse_rows(col: dict[str, Any], metric: str, path: Path | str, lines: np.ndarray, run_default: str,
               group_default: str, report: ReadReport) -> Rows:
    """Validated `Rows` from a table's cells keyed by known column name (see `resolve_columns`).

    `lines` holds each row's line for error messages; without a ``run`` / ``group`` column every
    row belongs to `run_default` / `group_default`. Repairs are counted in `report`.
    """
    n_rows = len(lines)
    report.files += 1
    report.rows += n_rows

    step, has_step = parse_numbers(col["step"], "step", path, lines)
    if not has_step.all():
        raise InputError(f"{path}:{lines[~has_step][0]}: empty step")
    bad = ~np.isfinite(step)
    if bad.any():
        report.nonfinite["step"] = report.nonfinite.get("step", 0) + int(bad.sum())
    keep = ~bad
    if np.any(step[keep] < 0):
        raise InputError(f"{path}:{lines[keep & (step < 0)][0]}: negative step {step[keep & (step < 0)][0]:g}")
    frac = keep & (step != np.round(step))
    if frac.any():
        raise InputError(f"{path}:{lines[frac][0]}: step {step[frac][0]:g} is not a whole number")

    value, has_value = parse_numbers(col[metric], metric, path, lines)
    nf = has_value & keep & ~np.isfinite(value)
    if nf.any():
        report.nonfinite[metric] = report.nonfinite.get(metric, 0) + int(nf.sum())
    has_value &= np.isfinite(value)

    if "lr" in col:
        lr, has_lr = parse_numbers(col["lr"], "lr", path, lines)
        nf = has_lr & keep & ~np.isfinite(lr)
        if nf.any():
            report.nonfinite["lr"] = report.nonfinite.get("lr", 0) + int(nf.sum())
        has_lr &= np.isfinite(lr)
        neg = has_lr & keep & (lr < 0)
        if neg.any():
            raise InputError(f"{path}:{lines[neg][0]}: negative learning rate {lr[neg][0]:g}")
    else:
        lr, has_lr = np.zeros(n_rows), np.zeros(n_rows, dtype=bool)

    runs = coded(col["run"]) if "run" in col else (np.array([run_default]), np.zeros(n_rows, dtype=np.int64))
    if "run" in col:
        empty = keep & (runs[0] == "")[runs[1]]
        if empty.any():
            raise InputError(f"{path}:{lines[empty][0]}: empty run name")
    groups = coded(col["group"]) if "group" in col else (np.array([group_default]), np.zeros(n_rows, dtype=np.int64))
    # optional model size (parameters) for size-aware laws; one value per run, on any of its rows
    size, has_size = parse_numbers(col["size"], "size", path, lines) if "size" in col else (
        np.zeros(n_rows), np.zeros(n_rows, dtype=bool))
    has_size &= np.isfinite(size)
    if np.any(has_size & keep & (size <= 0)):
        raise InputError(f"{path}:{lines[has_size & keep & (size <= 0)][0]}: model size must be positive")
    if keep.all():  # the usual file: no row to drop, no copies of every column
        keep = slice(None)
    return Rows(source=path, runs=(runs[0], runs[1][keep]), groups=(groups[0], groups[1][keep]),
                step=step[keep].astype(np.int64), value=value[keep], has_value=has_value[keep], lr=lr[keep],
                has_lr=has_lr[keep], lines=lines[keep], size=size[keep], has_size=has_size[keep])
