"""The fast path of reading a history CSV: pyarrow parses a plain file (no quotes, blanks or blank lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_NOT_PLAIN = (b'"', b" ", b"\t", b"\n\n", b"\n\r\n")


def is_plain(data: Any) -> bool:
    """No quotes, blanks or blank lines (bytes or an mmap of them)."""
    return all(data.find(c) < 0 for c in _NOT_PLAIN) and data[:1] not in (b"\n", b"\r")


def arrow_columns(data: bytes | Path, numeric: tuple[str, ...], strings: tuple[str, ...] = ("run", "group")
                  ) -> tuple[list[str], int, dict[str, Any]] | None:
    """Header, row count and columns read by pyarrow, numeric ones already parsed; None when
    pyarrow is absent or the file is not plain (quotes, blanks, blank lines, ragged rows, a numeric
    column with text): the csv-module path then reads it and reports the exact line of a problem.
    A path is a file already found plain, parsed from disk."""
    # bytes, not text: decoding a big file costs as much as parsing it (Arrow checks the UTF-8
    # of the string columns, and a numeric column that is not ASCII fails to parse)
    if not isinstance(data, Path) and not is_plain(data):
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
        # the system allocator, not Arrow's default mimalloc: on first use mimalloc spent 4.5 s of
        # system time mapping memory for a 330 MB file that parses in 1 s (glibc: 0.5 s)
        table = pcsv.read_csv(source, memory_pool=pa.system_memory_pool(), convert_options=pcsv.ConvertOptions(
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
            values = _float64(col)  # a null comes out as NaN
            values[~present] = 0.0
            cols[name] = (values, present)
        elif name in strings:
            # labels and codes, not a string per row: a unicode array of every row's name and its
            # sort (np.unique) were most of the read time of a big file
            enc = col.dictionary_encode().combine_chunks()
            labels = np.asarray(enc.dictionary.to_pylist(), dtype=str)
            codes = _plain_numbers(enc.indices).astype(np.int64)
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


def _plain_numbers(arr: Any) -> np.ndarray:
    """An Arrow array of fixed-width numbers as numpy: a view of its buffer where it has no nulls
    (pyarrow's own conversion of an integer column took 0.1 s per million rows), else pyarrow's
    conversion (nulls as NaN)."""
    if arr.null_count:
        return arr.to_numpy(zero_copy_only=False)
    import pyarrow as pa

    # the dtype from the type's width: `to_pandas_dtype` imports pandas (half a second of start-up)
    t = arr.type
    kind = "f" if pa.types.is_floating(t) else ("u" if pa.types.is_unsigned_integer(t) else "i")
    dtype = np.dtype(f"{kind}{t.bit_width // 8}")
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def _float64(col: Any) -> np.ndarray:
    """A numeric Arrow column (chunked) as one float64 array, nulls as NaN."""
    parts = [_plain_numbers(ch).astype(np.float64) for ch in col.chunks]
    return np.concatenate(parts) if parts else np.zeros(0)
