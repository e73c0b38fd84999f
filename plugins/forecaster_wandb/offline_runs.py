"""Offline runs: find the ``offline-run-*`` folders under a ``wandb`` directory and read their logs.

Air-gapped clusters run with ``WANDB_MODE=offline`` and upload later with ``wandb sync``. Each
run's metrics, config, summary and exit live in its ``run-<id>.wandb`` transaction log, read here
with `datastore` (read-only). Runs this plugin wrote itself (``job_type == "forecast"``) are told
apart so that they are never forecast in turn.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.errors import InputError
from forecaster_wandb.compat import KeyPath, LogRecord
from forecaster_wandb.datastore import ScanStats, iter_records

OFFLINE_PREFIX = "offline-run-"


@dataclass
class OfflineRun:
    """One offline run as its transaction log tells it."""

    dir: Path
    file: Path
    id: str
    entity: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    torn_tail: bool = False
    # key -> (steps, values): numeric points only, in the order logged
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    dropped: int = 0  # non-finite or non-numeric points of numeric keys
    offset: int = 0  # bytes of the log parsed into this object (after its last whole record)
    resumed: bool = False  # parsed from an earlier parse's offset rather than from the start

    def to_json(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "file": str(self.file), "id": self.id, "entity": self.entity,
                "project": self.project, "name": self.name, "group": self.group, "job_type": self.job_type,
                "tags": self.tags, "config": self.config, "summary": self.summary, "exit_code": self.exit_code,
                "series": self.series, "dropped": self.dropped, "offset": self.offset}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "OfflineRun":
        return cls(dir=Path(d["dir"]), file=Path(d["file"]), id=d["id"], entity=d["entity"], project=d["project"],
                   name=d["name"], group=d["group"], job_type=d["job_type"], tags=list(d["tags"]),
                   config=dict(d["config"]), summary=dict(d["summary"]), exit_code=d["exit_code"],
                   series={k: (list(v[0]), list(v[1])) for k, v in d["series"].items()},
                   dropped=int(d["dropped"]), offset=int(d["offset"]))

    @property
    def state(self) -> str:
        if self.exit_code is None:
            return "running"
        return "finished" if self.exit_code == 0 else "failed"

    @property
    def last_step(self) -> int:
        return max((s[-1] for s, _ in self.series.values() if s), default=-1)

    @property
    def synced(self) -> bool:
        """True once ``wandb sync`` uploaded it (it leaves a ``.synced`` marker beside the log)."""
        return Path(str(self.file) + ".synced").exists()

    def history(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        steps, values = self.series.get(key, ([], []))
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def find_wandb_dir(path: str | os.PathLike[str]) -> Path:
    """The folder holding ``offline-run-*``: ``path`` itself or its ``wandb`` child."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise InputError(f"--wandb-dir {p}: no such directory")
    if any(c.name.startswith(OFFLINE_PREFIX) for c in p.iterdir()):
        return p
    if (p / "wandb").is_dir():
        return p / "wandb"
    return p  # an empty wandb folder: no runs yet, which is not an error


def run_dirs(wandb_dir: Path) -> list[Path]:
    """Every offline run folder, oldest first (their names start with the start time)."""
    return sorted(c for c in wandb_dir.iterdir() if c.is_dir() and c.name.startswith(OFFLINE_PREFIX))


def _key(path: KeyPath) -> str:
    return "/".join(path)


def _set_nested(target: dict[str, Any], path: KeyPath, value: Any) -> None:
    if len(path) > 1:  # nested dicts logged as such
        d = target
        for k in path[:-1]:
            d = d.setdefault(k, {}) if isinstance(d.get(k, {}), dict) else {}
        d[path[-1]] = value
    else:
        target[_key(path)] = value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value:
        return value["value"]
    return value


def read_run(run_dir: Path, earlier: OfflineRun | None = None) -> OfflineRun:
    """Parse one ``offline-run-*`` folder (read-only); InputError when its log is unreadable.

    `earlier`: what a previous parse of the same log held (with its offset); only the bytes
    appended since are parsed onto it. The caller vouches that the bytes before are unchanged.
    """
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise InputError(f"{run_dir}: no run-*.wandb transaction log")
    file = logs[0]
    if earlier is not None and earlier.file == file:
        run, start = earlier, earlier.offset
        run.resumed = True
    else:
        run, start = OfflineRun(dir=run_dir, file=file, id=file.stem[len("run-"):]), 0
    stats = ScanStats()
    for rec in iter_records(file, stats, start):
        kind = rec.kind
        if kind == "run":
            r = rec.run
            run.id = r["id"] or run.id
            run.entity, run.project = r["entity"], r["project"]
            run.name = r["name"] or run.name
            run.group, run.job_type = r["group"], r["job_type"]
            run.tags = list(r["tags"])
            for path, text in rec.update:
                run.config[_key(path)] = _unwrap(json.loads(text))
        elif kind == "config":
            for path, text in rec.update:
                run.config[_key(path)] = _unwrap(json.loads(text))
            for path in rec.remove:
                run.config.pop(_key(path), None)
        elif kind == "summary":
            for path, text in rec.update:
                _set_nested(run.summary, path, json.loads(text))
            for path in rec.remove:
                run.summary.pop(_key(path), None)
        elif kind == "history":
            _add_history(run, rec)
        elif kind == "exit":
            run.exit_code = rec.exit_code
    run.config.pop("_wandb", None)
    run.torn_tail = stats.torn_tail
    run.offset = stats.offset
    return run


def _add_history(run: OfflineRun, history: LogRecord) -> None:
    row: dict[str, Any] = {}
    step = history.step
    for path, text in history.update:
        key = _key(path)
        if key == "_step":
            step = int(json.loads(text))
        elif not key.startswith("_"):
            row[key] = text
    if step is None:
        return
    for key, text in row.items():
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if key in run.series:
                run.dropped += 1
            continue  # media, tables, strings: not a metric
        steps, values = run.series.setdefault(key, ([], []))
        if not math.isfinite(value):
            run.dropped += 1
            continue
        steps.append(step)
        values.append(float(value))


def _seal(file: Path, offset: int) -> str:
    """What says a log still starts with the bytes parsed before: its size floor and a hash of its
    first and last 4 KiB up to `offset` (a replaced or truncated log differs there)."""
    h = hashlib.sha256()
    with open(file, "rb") as f:
        h.update(f.read(min(offset, 4096)))
        f.seek(max(0, offset - 4096))
        h.update(f.read(min(offset, 4096)))
    return f"{offset}:{h.hexdigest()[:32]}"


def read_dir(wandb_dir: Path, memo: dict[str, Any] | None = None
             ) -> tuple[list[OfflineRun], list[tuple[Path, str]]]:
    """All readable offline runs under ``wandb_dir`` plus (folder, reason) for the unreadable ones.

    `memo` (updated in place; JSON-able): per log, the parse so far and the byte offset reached,
    so that a log that only grew is parsed from there on. Anything that does not match is parsed
    again from the start.
    """
    runs, bad = [], []
    fresh: dict[str, Any] = {}
    for d in run_dirs(wandb_dir):
        try:
            earlier = None
            entry = (memo or {}).get(str(d))
            if entry:
                try:
                    candidate = OfflineRun.from_json(entry["run"])
                    if candidate.file.stat().st_size >= candidate.offset and \
                            _seal(candidate.file, candidate.offset) == entry["seal"]:
                        earlier = candidate
                except (KeyError, TypeError, ValueError, OSError):
                    earlier = None
            run = read_run(d, earlier)
            runs.append(run)
            if memo is not None:
                fresh[str(d)] = {"seal": _seal(run.file, run.offset), "run": run.to_json()}
        except (InputError, OSError, ValueError) as err:
            bad.append((d, str(err)))
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    return runs, bad
