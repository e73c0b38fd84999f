"""LR features of runs whose LR is known only at logged points, in closed form over the segments.

Between logged points the per-step LR is linear (`batch.lr_per_step`), so the sums the features
are made of have closed forms per segment: the LR area S1 an arithmetic series, the momentum
m_t = lam*m_(t-1) + d_t a geometric one (d_t is constant along a segment), and the momentum area
S2(t) = sum of m up to t = (D(t) - lam*m_t) / (1 - lam), where D(t) = eta_0 - eta_t sums the
decreases. So a run costs O(logged points + evaluation points) instead of O(steps): the same
values as the per-step construction up to rounding, on runs that log their LR every few steps.
Runs with a schedule object, unsorted LR steps or too many segments take the per-step path.
"""

from __future__ import annotations

import numpy as np

from forecaster.histories import RunHistory
from forecaster.stats import EPS

# more segments than this in one run: the scan over segments (a Python loop over segment
# positions, vectorised over runs) would cost more than the per-step construction
MAX_SEGMENTS = 4096


def eligible(h: RunHistory) -> bool:
    """Does `h` have its LR from logged points alone, sorted, few enough for the closed form?"""
    ps = h.lr_steps
    return (h.schedule is None and ps is not None and 0 < len(ps) <= MAX_SEGMENTS
            and bool(ps[0] >= 0) and bool(np.all(ps[1:] > ps[:-1])))


def _knots(h: RunHistory, last: int, warmup: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps (from 0, ending at `last`) and LR values at which a run's per-step LR bends: linear
    between them, as `batch.lr_per_step` interpolates."""
    ps, pv = h.lr_steps.astype(np.int64), h.lr_values.astype(np.float64)
    if ps[0] > 0:
        if warmup == "linear":  # linear from 0 at step 0
            ps, pv = np.r_[0, ps], np.r_[0.0, pv]
        elif warmup == "peak":  # the peak until the first logged step
            top = pv.max()
            head = [0] if ps[0] == 1 else [0, ps[0] - 1]
            ps, pv = np.r_[head, ps], np.r_[[top] * len(head), pv]
        else:  # held at the first value
            ps, pv = np.r_[0, ps], np.r_[pv[0], pv]
    at_last = np.interp(last, ps, pv)
    keep = ps < last
    steps, values = np.r_[ps[keep], last], np.r_[pv[keep], at_last]
    if np.any(values < 0):
        raise ValueError(f"run {h.run!r}: negative learning rate")
    return steps, values


def features(histories: list[RunHistory], points: list[np.ndarray], last: np.ndarray, top_pt: np.ndarray,
             warmup: str, lam: float, P: int) -> dict[str, np.ndarray]:
    """lr, s1, s2 at each run's `points` (R, P; padding holds arbitrary values), and peak and
    decayed (R,), for runs eligible for the closed form; `last` (R,) is the last step each run's
    per-step LR would span, `top_pt` its last evaluation point."""
    R = len(histories)
    knots = [_knots(h, int(last[i]), warmup) for i, h in enumerate(histories)]
    n = np.array([len(k[0]) for k in knots], dtype=np.int64)
    K = int(n.max())
    a = np.empty((R, K), dtype=np.int64)
    v = np.empty((R, K))
    filled = np.arange(K)[None, :] < n[:, None]
    a[filled] = np.concatenate([k[0] for k in knots])
    v[filled] = np.concatenate([k[1] for k in knots])
    # padding: flat segments of one step each after the end, never evaluated
    pad = ~filled
    a[pad] = (last[:, None] + np.cumsum(pad, axis=1))[pad]
    v[pad] = np.repeat(v[np.arange(R), n - 1], K - n)

    # the peak: the first knot at the largest LR (a linear LR peaks at a knot)
    top = np.argmax(np.where(filled, v, -np.inf), axis=1)
    top_lr = v[np.arange(R), top]
    before = np.arange(K)[None, :] < top[:, None]
    eta = np.where(before, top_lr[:, None], v)  # warmup counted at the peak (S2)
    area = eta if warmup == "peak" else v

    L = np.diff(a, axis=1).astype(np.float64)  # (R, K-1) segment lengths
    slope_area = np.diff(area, axis=1) / L
    # S1 before each knot: sum over whole segments of n*v0 + slope*n(n-1)/2
    seg_area = L * area[:, :-1] + slope_area * L * (L - 1) / 2.0
    before_knot = np.zeros((R, K))
    np.cumsum(seg_area, axis=1, out=before_knot[:, 1:])
    # the momentum at each knot: m_(j+1) = lam^L m_j - slope (1 - lam^L) / (1 - lam)
    slope_eta = np.diff(eta, axis=1) / L
    decay = lam ** L
    gain = -slope_eta * (1.0 - decay) / (1.0 - lam)
    m_knot = np.zeros((R, K))
    for j in range(K - 1):  # over segment positions, all runs at once
        m_knot[:, j + 1] = decay[:, j] * m_knot[:, j] + gain[:, j]

    pts = np.zeros((R, P), dtype=np.int64)
    lengths = np.array([len(p) for p in points], dtype=np.int64)
    mask = np.arange(P)[None, :] < lengths[:, None]
    if lengths.sum():
        pts[mask] = np.concatenate([np.asarray(p, dtype=np.int64) for p in points])
    pts = np.clip(pts, 0, last[:, None])
    # the segment of each point: row-offset keys make one sorted search serve every row
    span = int(a.max()) + 2
    rows = np.arange(R, dtype=np.int64)[:, None]
    j = np.searchsorted((a + rows * span).ravel(), (pts + rows * span).ravel(), side="right").reshape(R, P)
    j = np.clip(j - 1 - rows * K, 0, np.maximum(n - 2, 0)[:, None])

    def at(x: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, j, 1)

    a0 = at(a)
    k = (pts - a0).astype(np.float64)  # steps past the segment's first knot
    seg_len = at(np.concatenate([L, np.ones((R, 1))], axis=1))
    frac = np.where(k > 0, k / seg_len, 0.0)

    def lin(x: np.ndarray) -> np.ndarray:
        x0 = at(x)
        x1 = at(np.concatenate([x[:, 1:], x[:, -1:]], axis=1))
        return x0 + (x1 - x0) * frac

    lr = lin(v)
    sa = at(np.concatenate([slope_area, np.zeros((R, 1))], axis=1))
    s1 = at(before_knot) + (k + 1) * at(area) + sa * (k + 1) * k / 2.0
    se = at(np.concatenate([slope_eta, np.zeros((R, 1))], axis=1))
    lam_k = lam ** k
    m = lam_k * at(m_knot) - se * (1.0 - lam_k) / (1.0 - lam)
    s2 = ((eta[:, :1] - lin(eta)) - lam * m) / (1.0 - lam)

    # decreases of the per-step LR up to the last evaluation point, relative to the peak
    slope_v = np.diff(v, axis=1) / L
    steps_in = np.clip(np.minimum(a[:, 1:], top_pt[:, None]) - a[:, :-1], 0, None)
    down = (np.clip(-slope_v, 0.0, None) * steps_in).sum(1)
    peak = np.where(top_lr > 0, top_lr, 1.0)
    return {"lr": lr, "s1": np.maximum(s1, EPS), "s2": s2, "peak": peak, "decayed": down / peak}
