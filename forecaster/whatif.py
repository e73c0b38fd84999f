"""What-if schedules: a fitted run forecast under other futures for its learning rate.

The laws forecast a run from its LR schedule, so the same fit answers "what if I cool down now?":
the run's observed history stays, its LR up to the last observed step stays as it was, and only
the future changes. Every candidate is forecast in one batched call with the run's own fitted
parameters, and with the same random draws for its band (keyed by the run), so candidates differ
by their schedules, not by sampling noise. Where the group has not shown an LR decay the response
to one is not identified, and each candidate's band and notes say so (`bands.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster import bands, schedules
from forecaster.batch import lr_per_step
from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory, median_interval, steps_until

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster
    from forecaster.schedules import Schedule

SHAPES = ("linear", "cosine", "sqrt", "exp")
_DECAY_POINTS = 64  # points a cooldown's curve is drawn with (the schedule interpolates between them)


def cooldown(h: RunHistory, start: int, length: int, shape: str = "linear", final: float = 0.0,
             warmup: str = "linear", until: int | None = None) -> Schedule:
    """The run's LR as known up to `start`, then a decay over `length` steps to `final` x the LR
    at `start` (0: to zero), shaped linear, cosine, sqrt (1 - sqrt) or exp (geometric); with
    `until`, the final LR is then held to that step (a two-stage schedule)."""
    if shape not in SHAPES:
        raise InputError(f"cooldown shape {shape!r}: expected one of {', '.join(SHAPES)}")
    if length < 1 or start < 0:
        raise InputError(f"cooldown from step {start} over {length} steps: both must be positive")
    if not 0.0 <= final < 1.0:
        raise InputError(f"cooldown final {final}: a share of the LR at its start, from 0 to below 1")
    past = lr_per_step(h, start, warmup)
    if past is None:
        raise InputError(f"run {h.run!r} has no learning rate: a what-if schedule needs one")
    lr0 = float(past[-1])
    q = np.linspace(0.0, 1.0, _DECAY_POINTS + 1)
    if shape == "linear":
        frac = 1.0 - q
    elif shape == "cosine":
        frac = 0.5 * (1.0 + np.cos(np.pi * q))
    elif shape == "sqrt":
        frac = 1.0 - np.sqrt(q)
    else:  # geometric to `final` (or to 1e-3 of the start when the target is 0)
        floor = final if final > 0 else 1e-3
        frac = (floor ** q - floor) / (1.0 - floor)
    values = lr0 * (final + (1.0 - final) * frac)
    steps = np.r_[np.arange(start + 1), start + np.round(q[1:] * length).astype(np.int64)]
    values = np.r_[past, values[1:]]
    if until is not None and until > start + length:
        steps, values = np.r_[steps, until], np.r_[values, values[-1]]
    elif until is not None and until < start + length:
        raise InputError(f"cooldown held until step {until}: before the cooldown's end {start + length}")
    keep = np.r_[np.diff(steps) > 0, True]  # a short decay rounds several points onto one step
    return schedules.from_points(steps[keep], values[keep], total=int(steps[-1]))


def variant(h: RunHistory, schedule: Schedule, every: int | None = None, warmup: str = "linear") -> RunHistory:
    """`h` with its future under `schedule`: its LR up to its last observed step is kept as the fit
    saw it (the past happened; `warmup` fills steps before its first logged LR as the fit did), the
    horizon runs to the schedule's end at the run's logging interval."""
    total = schedule.total
    if total is None or total <= h.last_step:
        raise InputError(f"a what-if schedule must end after the run's last observed step {h.last_step}")
    past = lr_per_step(h, h.last_step, warmup)
    if past is not None:
        schedule = schedules.from_points(np.arange(h.last_step + 1), past, then=schedule, total=total)
    horizon = steps_until(h.last_step, total, max(1, every) if every is not None else median_interval(h.steps))
    lr_steps = lr_values = None
    if h.lr_steps is not None and len(h.lr_steps):
        past = h.lr_steps <= h.last_step
        lr_steps, lr_values = h.lr_steps[past], h.lr_values[past]
    return dataclasses.replace(h, schedule=schedule, horizon=horizon, lr_steps=lr_steps, lr_values=lr_values,
                               meta={**h.meta, "planned_end": total})


def predict_variants(fc: Forecaster, pairs: Sequence[tuple[int, Schedule]]) -> list[RunForecast]:
    """Each (fitted run index, schedule) forecast under that schedule: one batched band call per
    fitted law, however many runs (`Forecaster.predict_schedules` is this for one run)."""
    fc._check_fitted()
    for i, _ in pairs:
        if i in fc.skipped_:
            raise InputError(f"run {fc.histories_[i].run!r} was not fitted: {fc.skipped_[i]}")
    base = len(fc.histories_)
    fc.histories_.extend(variant(fc.histories_[i], s, warmup=fc.warmup) for i, s in pairs)
    by_key: dict[Any, list[int]] = {}
    for k, (i, _) in enumerate(pairs):
        by_key.setdefault(fc.choice_[i], []).append(base + k)
    done: dict[int, RunForecast] = {}
    try:
        for key, extra in by_key.items():
            fit, rows = fc.fits_[key]
            done.update(bands.forecast_fit(fc, fit, rows, extra, alias={j: pairs[j - base][0] for j in extra}))
    finally:
        del fc.histories_[base:]
    return [done[base + k] for k in range(len(pairs))]
