"""Read-only reader of W&B's ``.wandb`` transaction log (offline runs), decoded with wandb's protobufs.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB
blocks of records, each ``crc32 (uint32 LE) | length (uint16 LE) | type (uint8) | data``, where type
says whether the data is a FULL record or the FIRST / MIDDLE / LAST piece of one, and the CRC is
zlib's crc32 of the type byte followed by the data. Each reassembled record is a serialized
wandb protobuf ``Record``, decoded by `compat.decode_record`.

wandb 0.31 no longer ships a Python reader (its service, written in Go, owns the format), so this
module implements the framing and leaves every record's meaning to wandb's own protobuf classes.
The file is only ever opened for reading: a user's run must stay byte-identical.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forecaster.errors import InputError
from forecaster_wandb.compat import LogRecord, decode_record

HEADER = struct.Struct("<4sHB")
RECORD_HEADER = struct.Struct("<IHB")
BLOCK = 32768
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


@dataclass
class ScanStats:
    """What a scan met besides good records: a torn tail is normal for a run still being written."""

    records: int = 0
    torn_tail: bool = False
    offset: int = 0  # byte just after the last whole record: where a later scan can resume


def iter_raw(path: str | Path, stats: ScanStats | None = None, start: int = 0) -> Iterator[bytes]:
    """Yield each record's payload; raise InputError on a bad header or a corrupt record.

    `start`: a `ScanStats.offset` of an earlier scan of the same file, to read only what was
    appended since (the caller checks the bytes before it are unchanged).
    """
    path = Path(path)
    stats = stats if stats is not None else ScanStats()
    with open(path, "rb") as f:  # read-only, never "r+b"
        head = f.read(HEADER.size)
        if start > HEADER.size:
            f.seek(start)
        data = f.read()
    if len(head) < HEADER.size:
        raise InputError(f"{path}: not a W&B transaction log (file too short)")
    ident, magic, version = HEADER.unpack_from(head, 0)
    if ident != IDENT or magic != MAGIC:
        raise InputError(f"{path}: not a W&B transaction log (bad header)")
    if version != VERSION:
        raise InputError(f"{path}: W&B transaction log version {version} is not supported")
    # positions stay file offsets (the 32 KiB block grid is the file's); `data` starts at `base`
    base = max(start, HEADER.size)
    pos, pending = base, None
    n = base + len(data)
    stats.offset = base
    data = _Shifted(data, base)
    while pos < n:
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:  # block trailer: zero padding
            pos += left
            continue
        if pos + RECORD_HEADER.size > n:
            stats.torn_tail = True
            return
        crc, length, kind = data.unpack(RECORD_HEADER, pos)
        if crc == 0 and length == 0 and kind == 0:  # zero-filled rest of a block
            pos += left
            continue
        start = pos + RECORD_HEADER.size
        if start + length > n:
            stats.torn_tail = True
            return
        chunk = data[start:start + length]
        pos = start + length
        if kind not in _TYPE_CRC or zlib.crc32(chunk, _TYPE_CRC[kind]) & 0xFFFFFFFF != crc:
            if pos >= n:  # a half-flushed last record of a live run
                stats.torn_tail = True
                return
            raise InputError(f"{path}: corrupt record at byte {start - RECORD_HEADER.size}")
        if kind == FULL:
            stats.records += 1
            stats.offset = pos
            yield chunk
        elif kind == FIRST:
            pending = [chunk]
        elif pending is None:
            raise InputError(f"{path}: record piece without a start at byte {start - RECORD_HEADER.size}")
        else:
            pending.append(chunk)
            if kind == LAST:
                stats.records += 1
                stats.offset = pos
                yield b"".join(pending)
                pending = None
    if pending is not None:
        stats.torn_tail = True


class _Shifted:
    """Bytes read from file offset `base` on, indexed by file offset."""

    __slots__ = ("data", "base")

    def __init__(self, data: bytes, base: int) -> None:
        self.data, self.base = data, base

    def __getitem__(self, sl: slice) -> bytes:
        return self.data[sl.start - self.base:sl.stop - self.base]

    def unpack(self, st: struct.Struct, pos: int) -> tuple:
        return st.unpack_from(self.data, pos - self.base)


def iter_records(path: str | Path, stats: ScanStats | None = None, start: int = 0) -> Iterator[LogRecord]:
    """Yield each record of a ``.wandb`` file, decoded (from `start` on)."""
    for raw in iter_raw(path, stats, start):
        yield decode_record(raw)
