"""The advisory lock that keeps overlapping cron invocations from syncing the same scope at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from forecaster.errors import LockBusy
from forecaster.trackers import fingerprint


def default_lock_path(scope: str) -> Path:
    """Per-scope lock file under the user's cache directory."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "forecaster"
    return base / f"sync-{fingerprint(scope)}.lock"


@contextlib.contextmanager
def exclusive_lock(path: str | Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an advisory lock (flock) so overlapping cron invocations never sync the same scope at once."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a+") as f:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(f"another forecast sync holds {p}; not starting a second one") from None
                time.sleep(0.2)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive_locks(paths: list[str | Path], wait_s: float = 0.0) -> Iterator[None]:
    """`exclusive_lock` on every path, taken in sorted order (two syncs sharing some never deadlock)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    with contextlib.ExitStack() as stack:
        for p in sorted({str(Path(x).expanduser()) for x in paths}):
            stack.enter_context(exclusive_lock(p, max(0.0, deadline - time.monotonic())))
        yield
