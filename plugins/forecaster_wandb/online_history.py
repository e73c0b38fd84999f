"""Histories of online runs: one `scan_history` per key, concurrently, incrementally from a local cache.

A multi-key scan returns only rows holding *all* keys, so each key is scanned on its own. What was
read is kept per (server, run, key) on disk, and the next sync scans only from the last cached step.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.errors import RunGone
from forecaster.trackers import RunInfo, Series, canonical_uri, clean_series, fingerprint
from forecaster_wandb.core import logged_any, number
from forecaster_wandb.errors import is_gone, tracker_error


class HistoryCache:
    """Per (server, run, key) arrays already read, so a sync scans only from the last cached step.

    A cached series is trusted only if the server still holds the same value at its last step
    (the scan starts *at* that step); a rewound or rewritten run is read again from scratch.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, ident: str, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / f"{fingerprint(ident, key)}.npz"

    def get(self, ident: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path(ident, key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as z:
                return z["steps"].astype(np.int64), z["values"].astype(np.float64)
        except (OSError, ValueError, KeyError):
            return None

    def put(self, ident: str, key: str, steps: np.ndarray, values: np.ndarray) -> None:
        path = self._path(ident, key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, steps=steps, values=values)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a longer read next time


def default_cache_dir() -> Path:
    """Beside wandb's own cache (``WANDB_CACHE_DIR`` or ``~/.cache/wandb``)."""
    base = os.environ.get("WANDB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "wandb")
    return Path(base) / "forecaster-history"


class HistoryReader:
    """Reads the histories of listed runs through a `wandb.Api`, `workers` runs at a time."""

    def __init__(self, cache: HistoryCache, workers: int, page_size: int, exists: Callable[[str], bool]) -> None:
        self._cache = cache
        self.workers = workers
        self.page_size = page_size
        self._exists = exists  # whether a run ("ENTITY/PROJECT/ID") is still there, asked after a failed scan
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="wandb-read")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def read_histories(self, api: Any, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        pending: set[Future] = set()
        todo = list(runs)
        by_future: dict[Future, RunInfo] = {}
        pool = self._executor()
        while todo or pending:
            while todo and len(pending) < self.workers * 2:
                run = todo.pop(0)
                fut = pool.submit(self._run_histories, api, run, list(keys))
                by_future[fut] = run
                pending.add(fut)
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                run = by_future.pop(fut)
                try:
                    yield run, fut.result()
                except RunGone as gone:
                    yield run, gone

    def _run_histories(self, api: Any, run: RunInfo, keys: list[str]) -> dict[str, Series]:
        logged = set(run.extra.get("history_keys") or [])
        out: dict[str, Series] = {}
        for key in keys:
            if logged and key not in logged:
                continue  # never logged: absent, as the interface says
            series = self._scan_key(api, run, key)
            if series is not None:
                out[key] = series
        return out

    def _scan_key(self, api: Any, run: RunInfo, key: str) -> Series | None:
        base = canonical_uri(api.settings.get("base_url", ""))
        ident = f"{base}|{run.scope}/{run.id}|{run.extra.get('storage_id', '')}"
        last_step = int(run.extra.get("last_step", -1))
        cached = self._cache.get(ident, key)
        start = 0
        if cached is not None and len(cached[0]) and int(cached[0][-1]) <= last_step:
            start = int(cached[0][-1])
        new_s, new_v = self._scan(api, run, key, start)
        if start and cached is not None:
            cs, cv = cached
            same = len(new_s) and new_s[0] == cs[-1] and (
                new_v[0] == cv[-1] or (math.isnan(new_v[0]) and math.isnan(cv[-1])))
            if same:
                new_s = np.concatenate([cs, new_s[1:]])
                new_v = np.concatenate([cv, new_v[1:]])
            else:  # the run changed under the cache (rewound, rewritten): read it all again
                self._cache.put(ident, key, np.zeros(0, np.int64), np.zeros(0))
                return self._scan_key(api, run, key) if cached[0].size else None
        if not len(new_s) and not logged_any(run, key):
            return None
        series = clean_series(new_s, new_v)
        self._cache.put(ident, key, series.steps, series.values)
        return series

    def _scan(self, api: Any, run: RunInfo, key: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of `key` from step `start` on (one key per scan: see the module doc)."""
        try:
            wrun = api.run(f"{run.scope}/{run.id}")
            rows = wrun.scan_history(keys=[key], page_size=self.page_size, min_step=start)
            steps: list[int] = []
            values: list[float] = []
            for row in rows:
                x = number(row.get(key))
                if x is None or "_step" not in row:
                    continue
                steps.append(int(row["_step"]))
                values.append(x)
        except Exception as err:  # noqa: BLE001
            # wandb-core words a vanished run in several ways: ask the server whether it still exists
            if is_gone(err) or not self._exists(f"{run.scope}/{run.id}"):
                raise RunGone(f"run {run.label} was deleted or became unreadable during the sync") from None
            raise tracker_error(err, f"reading {key!r} of run {run.label}") from None
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def read_since(self, api: Any, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Tails of histories: a `scan_history` from each start step.

        The engine's cache holds what was read before, so this adapter's own cache is bypassed.
        Exact points (no sampling): W&B's sampled history differs between calls.
        """
        pool = self._executor()

        def tails(run: RunInfo) -> dict[str, Series]:
            logged = set(run.extra.get("history_keys") or [])
            out = {}
            for key, start in since.get(run.id, {}).items():
                if logged and key not in logged:
                    continue
                steps, values = self._scan(api, run, key, 0 if start is None else int(start))
                if len(steps) or logged_any(run, key):
                    out[key] = clean_series(steps, values)
            return out

        futures = {pool.submit(tails, r): r for r in runs}
        try:
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except RunGone as gone:
                    yield futures[fut], gone
        finally:
            for fut in futures:
                fut.cancel()
