"""A local cache of metric histories, so a sync reads from the tracker only what is new.

One SQLite file per sync scope, in the sync's state directory beside its lock. Per (scope, run,
key) it holds the points read so far and the listing watermark they were read at. A sync then:

- skips the read of a run/key whose watermark has not moved (siblings read as fit context cost
  nothing);
- reads only the steps from the cached last step on (inclusive: that one point is the cheap check
  that the history underneath is still the one cached);
- reads in full, and replaces, a history that was rewritten: the watermark went back, or the point
  at the cached last step is gone or holds another value (rewound, deleted and re-logged).

Everything here is an optimisation: a cache that cannot be opened, is corrupt or was written by
something else is moved aside and rebuilt with a warning, never trusted; one that cannot be
written only costs a full read next time. The sync's lock keeps two syncs of a scope apart; SQLite's
own locking keeps the file consistent should two processes share it anyway (different lock files).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union
from pathlib import Path

import numpy as np

from forecaster.errors import RunGone
from forecaster.trackers import RunInfo, Series, Tracker

log = logging.getLogger("forecaster.cache")

FORMAT = "forecaster-history-cache"
VERSION = "1"
# SQLite waits this long for another writer before giving up on the cache (not on the sync)
BUSY_TIMEOUT_S = 30.0


@dataclass
class Cached:
    """One cached history and the listing watermark (`Watermark.token`) it was read at."""

    steps: np.ndarray
    values: np.ndarray
    mark: str


def thin(series: Series, max_points: int | None, tail: int = 0) -> Series:
    """At most `max_points` evenly spaced points, first and last always kept (as MLflow samples),
    plus the last `tail` points all kept."""
    n = len(series)
    if not max_points or n <= max_points + tail:
        return series
    idx = np.round(np.linspace(0, n - 1, max_points)).astype(np.int64)
    if tail:
        idx = np.concatenate([idx, np.arange(n - tail, n)])
    idx = np.unique(idx)
    return Series(series.steps[idx], series.values[idx])


# points per full read: one figure for every key (None: every point), or one per key (a key not
# named is read whole)
Sample = Union[int, None, Mapping[str, Optional[int]]]


def sample_of(sample: Sample, key: str) -> int | None:
    """The points per full read of `key` under `sample`."""
    return sample.get(key) if isinstance(sample, Mapping) else sample


def sample_label(sample: Sample) -> str:
    """`sample` as the cache file records it: one figure when every key has it ("None": all whole)."""
    if not isinstance(sample, Mapping):
        return str(sample)
    if len(set(sample.values())) <= 1:
        return str(next(iter(sample.values()), None))
    sampled = sorted((k, v) for k, v in sample.items() if v)
    return ",".join(f"{k}:{v}" for k, v in sampled) if sampled else "None"


class HistoryCache:
    """The SQLite file of one scope; `sample` (points per full read) is part of its identity."""

    def __init__(self, path: str | Path, ident: str, sample: Sample) -> None:
        self.path = Path(path).expanduser()
        self.ident = ident
        self.sample = sample
        self.db: sqlite3.Connection | None = None
        self._open()

    # -- opening: anything unexpected is set aside and rebuilt ------------------------------
    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._connect()
            problem = self._check()
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                # another process is writing it for longer than the busy timeout: sound, just not ours now
                log.warning("history cache %s is busy (%s): this sync reads without it", self.path, e)
                self._close()
                return
            problem = f"unreadable ({e})"
        except (sqlite3.Error, OSError) as e:
            problem = f"unreadable ({e})"
        if problem is None:
            return
        self._close()
        if self.path.exists():
            aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            log.warning("history cache %s is %s: moved to %s and rebuilt (this sync reads histories in full)",
                        self.path, problem, aside.name)
            try:
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm", "-journal"):
                    side = self.path.with_name(self.path.name + suffix)
                    if side.exists():
                        side.unlink()
            except OSError as e:
                log.warning("history cache %s cannot be moved aside (%s): running without it", self.path, e)
                return
        try:
            self.db = self._connect()
            self._create()
        except (sqlite3.Error, OSError) as e:
            log.warning("history cache %s cannot be created (%s): running without it", self.path, e)
            self._close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        # a garbage file fails here, before any pragma could be mistaken for the problem
        db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        try:
            # WAL: a reader never blocks the writer; a crash mid-write leaves the last commit intact
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as e:  # e.g. a file system without shared memory: rollback journal
            log.debug("history cache %s: no WAL (%s)", self.path, e)
        return db

    def _check(self) -> str | None:
        """None when the file is ours, of this version and settings, and sound; else what is wrong."""
        assert self.db is not None
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            self._create()
            return None
        if not {"meta", "series"} <= tables <= {"meta", "series", "laws"}:
            return "not a forecaster history cache (foreign tables)"
        meta = dict(self.db.execute("SELECT k, v FROM meta"))
        if meta.get("format") != FORMAT:
            return "not a forecaster history cache"
        if meta.get("version") != VERSION:
            return f"of another format version ({meta.get('version')})"
        if meta.get("ident") != self.ident or meta.get("sample") != sample_label(self.sample):
            return "made for another tracker or sample size"
        ok = self.db.execute("PRAGMA quick_check").fetchone()
        if not ok or ok[0] != "ok":
            return f"corrupt ({ok[0] if ok else 'no answer'})"
        if "laws" not in tables:  # a cache written before law choices were remembered
            self._create()
        return None

    def _create(self) -> None:
        assert self.db is not None
        with self._tx():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS series (scope TEXT, run TEXT, key TEXT, mark TEXT, "
                            "n INTEGER, steps BLOB, vals BLOB, PRIMARY KEY (scope, run, key))")
            # the law `law="auto"` chose per fitted group (forecaster.sync.lawmemo), as JSON
            self.db.execute("CREATE TABLE IF NOT EXISTS laws (k TEXT PRIMARY KEY, v TEXT)")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("format", FORMAT), ("version", VERSION), ("ident", self.ident),
                                 ("sample", sample_label(self.sample))])

    def _tx(self):
        db = self.db

        class _T:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, et, ev, tb):
                db.execute("COMMIT" if et is None else "ROLLBACK")

        return _T()

    def _close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
        self.db = None

    def close(self) -> None:
        self._close()

    # -- use ---------------------------------------------------------------------------------
    def get(self, scope: str, run_ids: Sequence[str]) -> dict[tuple[str, str], Cached]:
        """Cached histories of these runs by (run id, key); {} when the cache is unusable."""
        if self.db is None or not run_ids:
            return {}
        out: dict[tuple[str, str], Cached] = {}
        try:
            ids = list(run_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT run, key, mark, n, steps, vals FROM series WHERE scope=? AND run IN ({marks})"
                for run, key, mark, n, steps, vals in self.db.execute(q, [scope, *chunk]):
                    s = np.frombuffer(steps, dtype="<i8")
                    v = np.frombuffer(vals, dtype="<f8")
                    if len(s) != n or len(v) != n:  # torn or foreign row: never trusted
                        continue
                    out[(run, key)] = Cached(s, v, mark)
        except sqlite3.Error as e:
            log.warning("history cache %s cannot be read (%s): reading histories in full", self.path, e)
            return {}
        return out

    def put(self, scope: str, rows: Sequence[tuple[str, str, str, Series]]) -> None:
        """Store (run id, key, watermark token, series) rows in one transaction."""
        if self.db is None or not rows:
            return
        try:
            with self._tx():
                self.db.executemany(
                    "INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(scope, run, key, mark, len(s), s.steps.astype("<i8").tobytes(),
                      s.values.astype("<f8").tobytes()) for run, key, mark, s in rows])
        except sqlite3.Error as e:
            log.warning("history cache %s cannot be written (%s): the next sync reads more", self.path, e)

    def get_laws(self, prefix: str) -> dict[str, str]:
        """Remembered law choices (JSON text) whose key starts with `prefix`; {} when unusable."""
        if self.db is None:
            return {}
        try:
            q = "SELECT k, v FROM laws WHERE substr(k, 1, ?) = ?"
            return dict(self.db.execute(q, (len(prefix), prefix)))
        except sqlite3.Error as e:
            log.debug("history cache %s: law choices unreadable: %s", self.path, e)
            return {}

    def put_laws(self, rows: Mapping[str, str]) -> None:
        """Store law choices (key -> JSON text) in one transaction."""
        if self.db is None or not rows:
            return
        try:
            with self._tx():
                self.db.executemany("INSERT OR REPLACE INTO laws VALUES (?, ?)", list(rows.items()))
        except sqlite3.Error as e:
            log.debug("history cache %s: law choices not stored: %s", self.path, e)

    def forget(self, scope: str, keep: set[str]) -> None:
        """Drop the rows of runs no longer listed (deleted runs), so the file does not grow forever."""
        if self.db is None:
            return
        try:
            have = {r[0] for r in self.db.execute("SELECT DISTINCT run FROM series WHERE scope=?", (scope,))}
            gone = sorted(have - keep)
            if gone:
                with self._tx():
                    self.db.executemany("DELETE FROM series WHERE scope=? AND run=?", [(scope, g) for g in gone])
        except sqlite3.Error as e:
            log.debug("history cache %s: could not drop old runs: %s", self.path, e)


def _merge(old: Cached, new: Series, since: int) -> Series | None:
    """Cached points before `since` + the new ones; None when the join shows a rewritten history.

    The read started at the cached last step `since`: its point must still be there, same value
    (a rewound or re-logged run changes it, or loses it).
    """
    if not len(new) or int(new.steps[0]) != since:
        return None
    at = int(np.searchsorted(old.steps, since))
    if at >= len(old.steps) or int(old.steps[at]) != since:
        return None
    a, b = old.values[at], new.values[0]
    if not (a == b or (np.isnan(a) and np.isnan(b))):
        return None
    keep = old.steps < since
    return Series(np.concatenate([old.steps[keep], new.steps]), np.concatenate([old.values[keep], new.values]))


def read_histories(tracker: Tracker, runs: Sequence[RunInfo], keys: Sequence[str],
                   cache: HistoryCache | None, sample: Sample = None,
                   stray_above: Mapping[str, float] | None = None
                   ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
    """What `Tracker.read_histories` yields, served from `cache` where the watermarks allow.

    Runs whose every key is cached at the current watermark are yielded without a request; the
    others are asked for the steps from their cached last step on (or everything), in one
    `Tracker.read_since` call; rewritten histories are read again in full in a second one.
    A watermark beyond the run's `stray_above` step (by run id) is a stray write that hides
    later progress below it: that key is always read, from the last cached step below the limit.
    """
    stray_above = stray_above or {}
    by_id = {r.id: r for r in runs}
    cached: dict[tuple[str, str], Cached] = {}
    if cache is not None:
        for scope in {r.scope for r in runs}:
            cached.update(cache.get(scope, [r.id for r in runs if r.scope == scope]))
    ready: dict[str, dict[str, Series]] = {}
    since: dict[str, dict[str, int | None]] = {}
    hits = misses = increments = 0
    for r in runs:
        ready[r.id] = {}
        for key in keys:
            wm = r.latest.get(key)
            if wm is None:
                continue
            c = cached.get((r.id, key))
            limit = stray_above.get(r.id, math.inf)
            if c is None or not len(c.steps) or (wm.step > limit and not c.steps[0] <= limit):
                since.setdefault(r.id, {})[key] = None
                misses += 1
            elif wm.step > limit:
                since.setdefault(r.id, {})[key] = int(c.steps[c.steps <= limit][-1])
                increments += 1
            elif c.mark == wm.token():
                ready[r.id][key] = Series(c.steps, c.values)
                hits += 1
            elif wm.step < int(c.steps[-1]):
                log.info("%s: %s went back from step %d to %d: read again in full", r.label, key,
                         int(c.steps[-1]), wm.step)
                since.setdefault(r.id, {})[key] = None
                misses += 1
            else:
                since.setdefault(r.id, {})[key] = int(c.steps[-1])
                increments += 1
    log.debug("history cache: %d hits, %d increments, %d full reads", hits, increments, misses)

    for r in runs:
        if r.id not in since:
            yield r, ready[r.id]
    to_store: list[tuple[str, str, str, Series]] = []
    store_scope: dict[str, str] = {}

    def settle(run: RunInfo, got: dict[str, Series], wanted: dict[str, int | None]) -> dict[str, int | None]:
        """Merge what came back into `ready`; return the keys whose history was rewritten."""
        again: dict[str, int | None] = {}
        for key, start in wanted.items():
            s = got.get(key)
            wm = run.latest[key]
            if s is not None and len(s):
                # a point logged after the listing would put the cache ahead of the watermark it records
                s = Series(s.steps[s.steps <= wm.step], s.values[s.steps <= wm.step])
            if start is None:
                if s is None:
                    continue
                s = thin(s, sample_of(sample, key))
            else:
                merged = _merge(cached[(run.id, key)], s, start) if s is not None else None
                if merged is None:
                    log.info("%s: history of %s was rewritten below step %d: read again in full",
                             run.label, key, start)
                    again[key] = None
                    continue
                s = merged
            ready[run.id][key] = s
            to_store.append((run.id, key, wm.token(), s))
            store_scope[run.id] = run.scope
        return again

    try:
        retry: dict[str, dict[str, int | None]] = {}
        # one `read_since` per sample size (keys sampled alike share requests); a run is
        # yielded once every key it waits for came back
        left = {rid: len(keys) for rid, keys in since.items()}
        failed: set[str] = set()
        for points, part in _by_sample(since, sample):
            for run, got in tracker.read_since([by_id[i] for i in part], part, points):
                if run.id in failed:
                    continue
                if isinstance(got, RunGone):
                    failed.add(run.id)
                    yield run, got
                    continue
                again = settle(run, got, part[run.id])
                retry.setdefault(run.id, {}).update(again)
                left[run.id] -= len(part[run.id])
                if left[run.id] == 0 and not retry[run.id]:
                    del retry[run.id]
                    yield run, ready[run.id]
        left = {rid: len(keys) for rid, keys in retry.items()}
        for points, part in _by_sample(retry, sample):
            for run, got in tracker.read_since([by_id[i] for i in part], part, points):
                if run.id in failed:
                    continue
                if isinstance(got, RunGone):
                    failed.add(run.id)
                    yield run, got
                    continue
                settle(run, got, part[run.id])
                left[run.id] -= len(part[run.id])
                if left[run.id] == 0:
                    yield run, ready[run.id]
    finally:
        if cache is not None and to_store:
            for scope in set(store_scope.values()):
                cache.put(scope, [row for row in to_store if store_scope[row[0]] == scope])


def _by_sample(since: Mapping[str, Mapping[str, int | None]], sample: Sample
               ) -> list[tuple[int | None, dict[str, dict[str, int | None]]]]:
    """`since` split by the points per full read of each key: (points, the part read with them)."""
    parts: dict[int | None, dict[str, dict[str, int | None]]] = {}
    for rid, keys in since.items():
        for key, start in keys.items():
            parts.setdefault(sample_of(sample, key), {}).setdefault(rid, {})[key] = start
    return sorted(parts.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))
