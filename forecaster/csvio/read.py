"""History CSV files read: a file or a folder of them into `RunHistory` objects (Arrow when it can, else csv)."""

from __future__ import annotations

import csv
import dataclasses
import io
import mmap
from pathlib import Path

import numpy as np

from forecaster.csvio.arrow import arrow_columns, is_plain
from forecaster.csvio.columns import Rows, parse_rows, require_columns, resolve_columns
from forecaster.csvio.report import ReadReport
from forecaster.csvio.runs import histories_from_rows
from forecaster.errors import InputError
from forecaster.histories import RunHistory

# a file at least this big is scanned in place and parsed by Arrow from disk: its bytes are never
# all held in memory at once (with Arrow's copy of them they were a third of a big read's peak)
BIG_FILE = 1 << 24


def _bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if not path.is_file():
        raise InputError(f"input is not a file: {path}")
    data = path.read_bytes()
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # as utf-8-sig reads it


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text CSV file") from None


def _table(path: Path, text: str) -> tuple[list[str], list[list[str]], np.ndarray, bool]:
    """Header, non-blank rows, their line numbers, and whether cells may need stripping."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None
    keep = [i for i, r in enumerate(rows) if r and (len(r) > 1 or r[0].strip())]
    if not keep:
        raise InputError(f"{path}: empty input (no header, no rows)")
    header = [c.strip() for c in rows[keep[0]]]
    data = [rows[i] for i in keep[1:]] if len(keep) < len(rows) else rows[1:]
    # line numbers as an editor shows them (exact unless quoted cells span lines)
    lines = np.asarray(keep[1:], dtype=np.int64) + 1
    return header, data, lines, (" " in text or "\t" in text)


def _wanted(first_line: bytes, metric: str, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numeric and string columns the fast path parses, from the header line."""
    head = first_line.rstrip(b"\r").decode("utf-8", errors="replace")
    guess = resolve_columns(head.split(","), metric, path)
    return (tuple(guess[c] for c in ("step", metric, "lr", "size") if c in guess),
            tuple(guess[c] for c in ("run", "group") if c in guess))


def read_file(path: Path, metric: str, run_default: str, group_default: str, report: ReadReport) -> Rows:
    """One CSV file's rows, parsed and validated; repairs are counted in `report`."""
    fast, data = None, None
    if path.is_file() and path.stat().st_size >= BIG_FILE:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            end = mm.find(b"\n")
            first = mm[: end if end >= 0 else len(mm)]
            plain = not first.startswith(b"\xef\xbb\xbf") and is_plain(mm)
        if plain:
            fast = arrow_columns(path, *_wanted(first, metric, path))
    if fast is None:
        data = _bytes(path)
        # the header as the fast path will see it (it reads plain files only: no quotes, no blanks)
        end = data.find(b"\n")
        fast = arrow_columns(data, *_wanted(data if end < 0 else data[:end], metric, path))
    if fast is not None:
        header, n_rows, col = fast
        lines = np.arange(n_rows, dtype=np.int64) + 2  # plain file: the header is line 1
    else:
        header, rows, lines, spaced = _table(path, _text(path, data if data is not None else _bytes(path)))
        n_rows = len(rows)
    names = require_columns(header, metric, path, n_rows)
    if fast is None:
        width = len(header)
        # ragged rows: pad short ones (empty cells), which csv files exported by hand often have
        if all(len(r) == width for r in rows):
            grid = np.array(rows, dtype=str)
        else:
            grid = np.array([(r + [""] * width)[:width] for r in rows], dtype=str)
        if spaced:  # stripping is costly on big files; only when some cell may carry blanks
            grid = np.char.strip(grid)
        col = {name: grid[:, i] for i, name in enumerate(header)}
    col = {known: col[name] for known, name in names.items() if name in col}
    return parse_rows(col, metric, path, lines, run_default, group_default, report)


def read_histories(path: str | Path, metric: str = "loss") -> tuple[list[RunHistory], ReadReport]:
    """Histories from a CSV file, or from a folder where each CSV file is one run (group = its folder).

    Runs keep their order of first appearance. In a single file without a ``run`` column all rows are
    one run named after the file; without a ``group`` column all runs form one group.
    """
    path = Path(path)
    report = ReadReport()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.csv") if p.is_file())
        if not files:
            raise InputError(f"{path}: folder has no .csv files")
        # run = file stem; qualified by its sub-folder only where stems collide across folders
        stems: dict[str, int] = {}
        for f in files:
            stems[f.stem] = stems.get(f.stem, 0) + 1
        parts = []
        for f in files:
            rel = f.parent.relative_to(path)
            group = path.name if str(rel) == "." else rel.as_posix()
            run = f.stem if stems[f.stem] == 1 else f"{group}/{f.stem}"
            rows = read_file(f, metric, run, group, report)
            # each file is one run: a run/group column inside is ignored for a folder input
            one = np.zeros(len(rows.step), dtype=np.int64)
            parts.append(dataclasses.replace(rows, runs=(np.array([run]), one), groups=(np.array([group]), one)))
    else:
        if not path.exists():
            raise InputError(f"input file not found: {path}")
        parts = [read_file(path, metric, path.stem, path.stem, report)]
    return histories_from_rows(parts, metric, report, path), report
