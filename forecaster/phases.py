"""Wall time per phase of a forecast call, for `benchmarks/speed.py --profile`.

Off unless $FORECASTER_PROFILE names a file: `forecast predict` then writes the totals there as
JSON when it ends. Times are exclusive (a phase inside another is not counted twice), so they add
up to the time measured. On CUDA the device is synchronised at each boundary, or the time of
queued kernels would land in whatever phase first waits for them. With
$FORECASTER_PROFILE_CLOCK=cpu the clock is the process's CPU time instead of wall time: on a
machine shared with other jobs it moves far less from run to run.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Iterator

ENV_VAR = "FORECASTER_PROFILE"
_totals: dict[str, float] = {}
_stack: list[float] = []  # time spent in phases nested inside each open phase


def enabled() -> bool:
    return bool(os.environ.get(ENV_VAR))


def _sync() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the time of the block under `name` (exclusive of phases nested in it)."""
    if not enabled():
        yield
        return
    clock = time.process_time if os.environ.get("FORECASTER_PROFILE_CLOCK") == "cpu" else time.perf_counter
    _sync()
    t0 = clock()
    _stack.append(0.0)
    try:
        yield
    finally:
        _sync()
        spent = clock() - t0
        inner = _stack.pop()
        _totals[name] = _totals.get(name, 0.0) + spent - inner
        if _stack:
            _stack[-1] += spent


def totals() -> dict[str, float]:
    return dict(_totals)


def reset() -> None:
    _totals.clear()
    _stack.clear()


def write(extra: dict[str, float] | None = None) -> None:
    """Write the totals (and `extra` entries) to $FORECASTER_PROFILE when it is set."""
    path = os.environ.get(ENV_VAR)
    if path:
        with open(path, "w") as fh:
            json.dump({**_totals, **(extra or {})}, fh, indent=1)
