"""Which runs the laws can fit at all, and the one-line reason for each run they cannot."""

from __future__ import annotations

import numpy as np

from forecaster import bands, laws
from forecaster.histories import RunHistory

MIN_POINTS = 5
# a run with fewer points is still forecast when a sibling has MIN_POINTS: the group's fit holds
# the law's shape, and the run's own parameters deviate from it under the pooling penalty
MIN_POOLED = 2
# largest metric value a run may reach: the fit clamps its predictions to 1e12 (fit.py), and
# two decades of headroom keep a forecast scale-free; above it the fit and its bands are
# nonsense or the covariance overflows, so such a run is declined with a hint to rescale
MAX_VALUE = 1e10


def informative_lr(h: RunHistory) -> bool:
    """The run has a learning rate the LR laws can read: a schedule, or logged values not all zero
    (an LR logged as 0 throughout says nothing of the schedule; the run gets the schedule-free laws)."""
    return h.schedule is not None or (h.has_lr and bool(np.any(np.asarray(h.lr_values) > 0)))


def rises(values: np.ndarray) -> bool:
    """Does the metric clearly rise over the run (its last quarter above its first by far more than
    its noise)? The laws model a falling, loss-like metric: an accuracy or a reward is not one, nor
    a run that diverged; a flat noisy curve is (it is forecast flat)."""
    q = len(values) // 4
    if q < 2:
        return False
    logs = np.log(values)
    gap = float(np.median(logs[-q:]) - np.median(logs[:q]))
    return gap > 5.0 * bands.noise_scale(values) * np.sqrt(2.0 / q) + 1e-3


def rising(values: list[np.ndarray]) -> np.ndarray:
    """`rises` of every curve at once."""
    if not values:
        return np.zeros(0, dtype=bool)
    logs, n = bands._padded([np.log(np.asarray(v, dtype=np.float64)) for v in values])
    q = n // 4
    col = np.arange(logs.shape[1])[None, :]
    first = bands.row_medians(logs, col < q[:, None])
    last = bands.row_medians(logs, (col >= (n - q)[:, None]) & (col < n[:, None]))
    with np.errstate(invalid="ignore", divide="ignore"):
        bar = 5.0 * bands.noise_scales(values) * np.sqrt(2.0 / np.maximum(q, 1)) + 1e-3
        return (q >= 2) & (last - first > bar)


def skip_reasons(histories: list[RunHistory], law_name: str) -> dict[int, str]:
    """Why each run that cannot be fitted under `law_name` ("auto": any candidate) is left out,
    by its index in `histories`; runs not listed are fitted."""
    law = laws.get(law_name) if law_name != "auto" else None
    # under a law whose parameters are all shared (size-aware), a run needs no points of its
    # own: its size and schedule place it on the group's law
    shared_law = law is not None and set(law.annealing) == set(law.params)
    fitted_groups = {h.group for h in histories if len(h.steps) >= MIN_POINTS}
    positive = [bool(len(h.values) == 0 or (h.values.min() > 0 and h.values.max() <= MAX_VALUE))
                for h in histories]
    # the rising check only where the others pass (a log of a non-positive value is NaN)
    up = dict(zip((i for i, ok in enumerate(positive) if ok),
                  rising([h.values for h, ok in zip(histories, positive) if ok])))
    out: dict[int, str] = {}
    for i, h in enumerate(histories):
        if law is not None and law.needs_size and not (h.size and h.size > 0):
            out[i] = f"law {law_name!r} needs the model size and the run has none"
        elif len(h.steps) < MIN_POINTS and not ((shared_law or len(h.steps) >= MIN_POOLED)
                                                and h.group in fitted_groups):
            out[i] = (f"too few points to fit ({len(h.steps)} < {MIN_POINTS}, or "
                      f"{MIN_POOLED} with siblings that have {MIN_POINTS})")
        elif np.any(h.values <= 0):
            out[i] = "metric has non-positive values; the laws model a positive loss"
        elif np.any(h.values > MAX_VALUE):
            out[i] = (f"metric reaches {float(np.max(h.values)):.3g}, beyond the fit's range (up to "
                      f"{MAX_VALUE:.0e}); rescale it, e.g. divide by a power of ten")
        elif up[i]:
            out[i] = ("metric rises over the run; the laws model a falling, loss-like metric "
                      "(forecast an error such as 1 - accuracy instead)")
        elif law is not None and law.needs_lr and not informative_lr(h):
            out[i] = (f"law {law_name!r} needs a learning rate and the run has none "
                      "(or logs 0 throughout)")
    return out
