"""CSV in and out: validate a history CSV (or a folder of them) into `RunHistory` objects, write forecasts.

Input columns: ``step`` and the metric (required), ``run``, ``group``, ``lr`` (optional), names
matched ignoring case, W&B's ``_step`` read as the step. Rows whose
metric cell is empty carry LR only; a run's horizon is its rows after its last observed metric value.
Every problem is either fatal (`InputError`: one line, exit code 2) or repaired and counted in a
warning line, never silently dropped. Plain csv module and numpy: pandas is not a dependency.
"""

from __future__ import annotations

import csv
import io
import json
import math
import mmap
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory

OUTPUT_COLUMNS = ("run", "step", "lr", "p50", "p10", "p90")


@dataclass
class ReadReport:
    """What reading repaired: counts behind the warning lines printed on stderr."""

    nonfinite: dict[str, int] = field(default_factory=dict)  # column -> values dropped
    duplicates: dict[str, int] = field(default_factory=dict)  # run -> values overwritten
    unsorted: list[str] = field(default_factory=list)  # runs whose rows were not in step order
    files: int = 0
    rows: int = 0

    def warnings(self) -> list[str]:
        """One human line per kind of repair."""
        out = []
        if self.nonfinite:
            total = sum(self.nonfinite.values())
            per = ", ".join(f"{c}: {n}" for c, n in sorted(self.nonfinite.items()))
            out.append(f"dropped {total} NaN/inf value{'s' * (total != 1)} ({per})")
        if self.duplicates:
            total = sum(self.duplicates.values())
            out.append(f"{total} duplicate step value{'s' * (total != 1)} in {_names(self.duplicates)}: "
                       "kept the last of each")
        if self.unsorted:
            out.append(f"rows not in step order in {_names(self.unsorted)}: sorted by step")
        return out


def _names(runs: Iterable[str], limit: int = 5) -> str:
    runs = list(runs)
    shown = ", ".join(repr(r) for r in runs[:limit])
    more = f" and {len(runs) - limit} more" if len(runs) > limit else ""
    return f"run{'s' * (len(runs) != 1)} {shown}{more}"


# -- reading ---------------------------------------------------------------------------------------
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


def _resolve_columns(header: list[str], metric: str, path: Path) -> dict[str, str]:
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


_NOT_PLAIN = (b'"', b" ", b"\t", b"\n\n", b"\n\r\n")
# a file at least this big is scanned in place and parsed by Arrow from disk: its bytes are never
# all held in memory at once (with Arrow's copy of them they were a third of a big read's peak)
BIG_FILE = 1 << 24


def _plain(data: Any) -> bool:
    """No quotes, blanks or blank lines (bytes or an mmap of them)."""
    return all(data.find(c) < 0 for c in _NOT_PLAIN) and data[:1] not in (b"\n", b"\r")


def _arrow_columns(data: bytes | Path, numeric: tuple[str, ...], strings: tuple[str, ...] = ("run", "group")
                   ) -> tuple[list[str], int, dict[str, Any]] | None:
    """Header, row count and columns read by pyarrow, numeric ones already parsed; None when
    pyarrow is absent or the file is not plain (quotes, blanks, blank lines, ragged rows, a numeric
    column with text): the csv-module path then reads it and reports the exact line of a problem.
    A path is a file already found plain, parsed from disk."""
    # bytes, not text: decoding a big file costs as much as parsing it (Arrow checks the UTF-8
    # of the string columns, and a numeric column that is not ASCII fails to parse)
    if not isinstance(data, Path) and not _plain(data):
        return None
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    # Arrow-owned copy of the bytes, not a view of a Python object: when a read fails (an empty
    # file, a cell that is not a number), Arrow's worker thread may drop its last reference to
    # the input after the exception reached us; a Python-owned buffer then takes the GIL from
    # that thread while the interpreter is shutting down, which aborts the process (exit 134,
    # "terminate called without an active exception") after the one-line error was printed.
    if isinstance(data, Path):
        source = str(data)  # Arrow opens and owns it
    else:
        sink = pa.BufferOutputStream()
        sink.write(data)
        source = pa.BufferReader(sink.getvalue())
    try:
        table = pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in strings}, null_values=[""],
            strings_can_be_null=False))
    except (pa.ArrowException, ValueError):
        return None
    header = table.column_names
    if len(set(header)) != len(header) or "" in header:
        return None
    cols: dict[str, Any] = {}
    for name in header:
        col, typ = table[name], table[name].type
        if name in numeric:
            if pa.types.is_null(typ):  # every cell empty
                cols[name] = (np.zeros(len(col)), np.zeros(len(col), dtype=bool))
                continue
            if not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
                return None
            present = _valid(col)
            values = col.to_numpy().astype(np.float64)  # a null comes out as NaN
            values[~present] = 0.0
            cols[name] = (values, present)
        elif name in strings:
            # labels and codes, not a string per row: a unicode array of every row's name and its
            # sort (np.unique) were most of the read time of a big file
            enc = col.dictionary_encode().combine_chunks()
            labels = np.asarray(enc.dictionary.to_pylist(), dtype=str)
            codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            cols[name] = (labels if len(labels) else np.zeros(0, dtype=str), codes)
    return header, table.num_rows, cols


def _valid(col: Any) -> np.ndarray:
    """Which cells of an Arrow column are not null, from its validity bitmaps (no compute kernel)."""
    parts = []
    for ch in col.chunks:
        if ch.null_count == 0:
            parts.append(np.ones(len(ch), dtype=bool))
        else:
            bits = np.unpackbits(np.frombuffer(ch.buffers()[0], dtype=np.uint8), bitorder="little")
            parts.append(bits[ch.offset: ch.offset + len(ch)].astype(bool))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


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


def _numbers(cells: Any, column: str, path: Path, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _wanted(first_line: bytes, metric: str, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numeric and string columns the fast path parses, from the header line."""
    head = first_line.rstrip(b"\r").decode("utf-8", errors="replace")
    guess = _resolve_columns(head.split(","), metric, path)
    return (tuple(guess[c] for c in ("step", metric, "lr", "size") if c in guess),
            tuple(guess[c] for c in ("run", "group") if c in guess))


def _read_file(path: Path, metric: str, run_default: str, group_default: str,
               report: ReadReport) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Parse one CSV into per-row arrays, validated; returns one record of columns per file."""
    fast, data = None, None
    if path.is_file() and path.stat().st_size >= BIG_FILE:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            end = mm.find(b"\n")
            first = mm[: end if end >= 0 else len(mm)]
            plain = not first.startswith(b"\xef\xbb\xbf") and _plain(mm)
        if plain:
            fast = _arrow_columns(path, *_wanted(first, metric, path))
    if fast is None:
        data = _bytes(path)
        # the header as the fast path will see it (it reads plain files only: no quotes, no blanks)
        end = data.find(b"\n")
        fast = _arrow_columns(data, *_wanted(data if end < 0 else data[:end], metric, path))
    if fast is not None:
        header, n_rows, col = fast
        lines = np.arange(n_rows, dtype=np.int64) + 2  # plain file: the header is line 1
    else:
        header, rows, lines, spaced = _table(path, _text(path, data if data is not None else _bytes(path)))
        n_rows = len(rows)
    names = _resolve_columns(header, metric, path)
    missing = [c for c in ("step", metric) if c not in names]
    if missing:
        have = ", ".join(header) if any(header) else "none"
        labels = ["step (or _step)" if c == "step" else c for c in missing]
        raise InputError(f"{path}: missing column{'s' * (len(missing) > 1)} {', '.join(labels)}; names match "
                         f"ignoring case (columns found: {have})")
    if not n_rows:
        raise InputError(f"{path}: empty input (a header and no data rows)")
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
    report.files += 1
    report.rows += n_rows

    step, has_step = _numbers(col["step"], "step", path, lines)
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

    value, has_value = _numbers(col[metric], metric, path, lines)
    nf = has_value & keep & ~np.isfinite(value)
    if nf.any():
        report.nonfinite[metric] = report.nonfinite.get(metric, 0) + int(nf.sum())
    has_value &= np.isfinite(value)

    if "lr" in col:
        lr, has_lr = _numbers(col["lr"], "lr", path, lines)
        nf = has_lr & keep & ~np.isfinite(lr)
        if nf.any():
            report.nonfinite["lr"] = report.nonfinite.get("lr", 0) + int(nf.sum())
        has_lr &= np.isfinite(lr)
        neg = has_lr & keep & (lr < 0)
        if neg.any():
            raise InputError(f"{path}:{lines[neg][0]}: negative learning rate {lr[neg][0]:g}")
    else:
        lr, has_lr = np.zeros(n_rows), np.zeros(n_rows, dtype=bool)

    runs = _coded(col["run"]) if "run" in col else (np.array([run_default]), np.zeros(n_rows, dtype=np.int64))
    if "run" in col:
        empty = keep & (runs[0] == "")[runs[1]]
        if empty.any():
            raise InputError(f"{path}:{lines[empty][0]}: empty run name")
    groups = _coded(col["group"]) if "group" in col else (np.array([group_default]), np.zeros(n_rows, dtype=np.int64))
    # optional model size (parameters) for size-aware laws; one value per run, on any of its rows
    size, has_size = _numbers(col["size"], "size", path, lines) if "size" in col else (
        np.zeros(n_rows), np.zeros(n_rows, dtype=bool))
    has_size &= np.isfinite(size)
    if np.any(has_size & keep & (size <= 0)):
        raise InputError(f"{path}:{lines[has_size & keep & (size <= 0)][0]}: model size must be positive")
    return [(path, (runs[0], runs[1][keep]), (groups[0], groups[1][keep]), step[keep].astype(np.int64), value[keep], has_value[keep],
             lr[keep], has_lr[keep], lines[keep], size[keep], has_size[keep])]


def _coded(cells: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels, code of each row) of a string column: pyarrow's dictionary encoding, or the
    csv-module path's strings factorised."""
    if isinstance(cells, tuple):
        return cells
    labels, codes = np.unique(cells, return_inverse=True)
    return labels, codes.reshape(-1).astype(np.int64)


def _concat_coded(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One (labels, codes) for several files' columns, equal labels merged."""
    if len(pairs) == 1:
        labels, codes = pairs[0]
    else:
        offsets = np.cumsum([0] + [len(lab) for lab, _ in pairs[:-1]])
        labels = np.concatenate([lab for lab, _ in pairs])
        codes = np.concatenate([c + o for (_, c), o in zip(pairs, offsets)])
    uniq, inverse = np.unique(labels, return_inverse=True)
    return uniq, inverse.reshape(-1)[codes] if len(codes) else codes


def _last_per_key(code: np.ndarray, step: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Indices (into the inputs) of the last row, in `order`, of each (code, step) pair; sorted by pair."""
    if len(code) and code.max() < 2**62 // (int(step.max()) + 2):
        key = code * (int(step.max()) + 1) + step
        if np.all(np.diff(order) > 0) and np.all(key[1:] > key[:-1]):
            # rows already grouped by run, steps rising, no duplicates: the usual file needs no sort
            return np.arange(len(code))
    # lexsort: last key is primary; stable in file order so the last duplicate ends last
    idx = np.lexsort((order, step, code))
    c, s = code[idx], step[idx]
    last = np.ones(len(idx), dtype=bool)
    last[:-1] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    return idx[last]


def _factorize(labels: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels present in order of first appearance, index of each one's first row, code of every
    row in that order) from codes into `labels`."""
    first = np.full(len(labels), len(codes), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write, the first row, wins
    present = np.flatnonzero(first < len(codes))
    order = present[np.argsort(first[present], kind="stable")]
    rank = np.full(len(labels), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return labels[order], first[order], rank[codes]


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
            recs = _read_file(f, metric, run, group, report)
            # each file is one run: a run/group column inside is ignored for a folder input
            for rec in recs:
                n = len(rec[3])
                one = np.zeros(n, dtype=np.int64)
                parts.append((rec[0], (np.array([run]), one), (np.array([group]), one)) + rec[3:])
    else:
        if not path.exists():
            raise InputError(f"input file not found: {path}")
        parts = _read_file(path, metric, path.stem, path.stem, report)

    src = np.concatenate([np.full(len(p[3]), i) for i, p in enumerate(parts)])
    runs = _concat_coded([p[1] for p in parts])
    groups = _concat_coded([p[2] for p in parts])

    def joined(k: int) -> np.ndarray:  # one file's column as it is: a copy of a big file costs
        return parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])

    step, value, has_value, lr, has_lr, lines, size, has_size = (joined(k) for k in range(3, 11))
    if len(step) == 0:
        raise InputError(f"{path}: empty input (no usable rows)")
    order = np.arange(len(step))

    names, first, code = _factorize(*runs)
    # one group per run
    gcode = groups[1]
    clash = gcode != gcode[first][code]
    if clash.any():
        dup = code[np.argmax(clash)]
        raise InputError(f"run {str(names[dup])!r} appears in more than one group "
                         f"({', '.join(sorted(set(groups[0][gcode[code == dup]])))}); a run belongs to one group")

    # unsorted: a step smaller than the previous row's step of the same run, in file order
    by_run = order if np.all(code[1:] >= code[:-1]) else np.lexsort((order, code))
    c, s = code[by_run], step[by_run]
    back = (c[1:] == c[:-1]) & (s[1:] < s[:-1])
    for r in np.unique(c[1:][back]):
        report.unsorted.append(str(names[r]))

    def column(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sel = np.flatnonzero(mask)
        keep = sel[_last_per_key(code[sel], step[sel], order[sel])]
        dups = np.bincount(code[sel], minlength=len(names)) - np.bincount(code[keep], minlength=len(names))
        for r in np.flatnonzero(dups):
            report.duplicates[str(names[r])] = report.duplicates.get(str(names[r]), 0) + int(dups[r])
        return keep, code[keep]

    obs, obs_code = column(has_value)
    lrk, lr_code = column(has_lr)
    allk = _last_per_key(code, step, order)
    all_code = code[allk]

    def split(idx: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
        bounds = np.searchsorted(codes, np.arange(len(names) + 1))
        return [idx[bounds[i]: bounds[i + 1]] for i in range(len(names))]

    obs_by, lr_by, all_by = split(obs, obs_code), split(lrk, lr_code), split(allk, all_code)
    any_lr = bool(has_lr.any())
    run_size = np.full(len(names), np.nan)
    run_size[code[has_size][::-1]] = size[has_size][::-1]  # the first size a run gives
    out = []
    for r in np.argsort(first, kind="stable"):
        o = obs_by[r]
        s_obs = step[o]
        last = int(s_obs[-1]) if len(o) else -1
        rows = step[all_by[r]]
        horizon = rows[rows > last]
        lr_idx = lr_by[r]
        out.append(RunHistory(
            run=str(names[r]), steps=s_obs, values=value[o], group=str(groups[0][gcode[first[r]]]),
            lr_steps=step[lr_idx] if any_lr else None, lr_values=lr[lr_idx] if any_lr else None,
            horizon=horizon, metric=metric, size=None if np.isnan(run_size[r]) else float(run_size[r]),
            meta={"source": str(parts[src[first[r]]][0]), "line": int(lines[first[r]]),
                  "row_steps": rows},
        ))
    return out, report


def logging_interval(h: RunHistory) -> int:
    """The run's median step between logged values (metric rows, else all rows), at least 1."""
    for s in (h.steps, h.meta.get("row_steps", np.zeros(0))):
        if len(s) >= 2:
            return max(1, int(np.median(np.diff(s))))
    return 1


def extend_horizon(h: RunHistory, until: int) -> np.ndarray:
    """Every k-th step after the last row up to `until` (included), k = the run's logging interval."""
    start = int(h.meta["row_steps"][-1]) if len(h.meta.get("row_steps", ())) else h.last_step
    k = logging_interval(h)
    if until <= start:
        return np.zeros(0, dtype=np.int64)
    steps = np.arange(start + k, until, k, dtype=np.int64)
    return np.append(steps, np.int64(until))


# -- writing ---------------------------------------------------------------------------------------
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


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def jsonable(obj: Any) -> Any:
    """The same structure as strict JSON can hold it: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def summary(histories: list[RunHistory], forecasts: list[RunForecast], *,
            warnings: list[str] = (), settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per run: law, parameters, predicted final value with its interval, or why it was skipped."""
    return assemble_summary(summary_entries(histories, forecasts), warnings=warnings, settings=settings)


def summary_entries(histories: list[RunHistory], forecasts: list[RunForecast]) -> list[dict[str, Any]]:
    """The per-run entries of `summary` (a big input's chunks each add theirs)."""
    runs = []
    for h, f in zip(histories, forecasts):
        entry: dict[str, Any] = {
            "run": f.run, "group": f.group, "metric": f.metric,
            "observed": {"points": int(len(h.steps)),
                         "last_step": int(h.steps[-1]) if len(h.steps) else None,
                         "last_value": _num(float(h.values[-1])) if len(h.values) else None},
            "law": f.law, "params": {k: _num(v) for k, v in f.params.items()},
            "skipped": f.skipped, "notes": list(f.notes),
        }
        if not f.skipped and len(f.steps):
            lo, hi = f.final_interval
            entry["final"] = {"step": int(f.steps[-1]), "p50": _num(f.final), "p10": _num(lo), "p90": _num(hi)}
            entry["horizon_points"] = int(len(f.steps))
        else:
            entry["final"] = None
            entry["horizon_points"] = 0
        runs.append(entry)
    return runs


def assemble_summary(runs: list[dict[str, Any]], *, warnings: list[str] = (),
                     settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary document from its per-run entries."""
    return {
        "settings": settings or {},
        "forecast": sum(1 for r in runs if not r["skipped"] and r["final"]),
        "skipped": [{"run": r["run"], "group": r["group"], "reason": r["skipped"]} for r in runs if r["skipped"]],
        "warnings": list(warnings),
        "runs": runs,
    }


def write_json(obj: Any, path: str | Path | None) -> None:
    """Write JSON to `path` ('-' or None: stdout)."""
    text = json.dumps(obj, indent=2, allow_nan=False)
    if path in (None, "-"):
        sys.stdout.write(text + "\n")
    else:
        Path(path).write_text(text + "\n")
