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


def _knots(histories: list[RunHistory], last: np.ndarray, warmup: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps (R, K) from 0 to each run's `last` at which its per-step LR bends, the LR values there
    (linear in between, as `batch.lr_per_step` interpolates), and the count of knots per run
    (padding after it is arbitrary). All runs at once: a per-run build was most of the cost."""
    R = len(histories)
    count = np.array([len(h.lr_steps) for h in histories], dtype=np.int64)
    first = np.r_[0, np.cumsum(count)[:-1]]
    run = np.repeat(np.arange(R), count)
    ps = np.concatenate([h.lr_steps for h in histories]).astype(np.int64)
    pv = np.concatenate([h.lr_values for h in histories]).astype(np.float64)
    ps0, pv0, top = ps[first], pv[first], np.maximum.reduceat(pv, first)
    # before the first logged step: linear from 0 at step 0, the peak, or held at the first value
    head_steps = np.stack([np.zeros(R, dtype=np.int64), ps0 - 1], 1)
    if warmup == "peak":
        n_head = np.where(ps0 > 1, 2, np.where(ps0 > 0, 1, 0))
        head_values = np.stack([top, top], 1)
    else:
        n_head = (ps0 > 0).astype(np.int64)
        head_values = np.stack([np.zeros(R) if warmup == "linear" else pv0] * 2, 1)
    # the LR at `last`, interpolated as np.interp would (held after the last logged step)
    before = ps < last[run]
    kept = np.add.reduceat(before.astype(np.int64), first)
    nxt = first + np.minimum(kept, count - 1)
    prv = first + np.maximum(kept - 1, 0)
    x0, x1, y0, y1 = ps[prv], ps[nxt], pv[prv], pv[nxt]
    inside = y0 + (y1 - y0) * (last - x0) / np.maximum(x1 - x0, 1)
    if warmup == "linear":
        warm = pv0 * last / np.maximum(ps0, 1)
    else:
        warm = np.where(last < ps0 - 1 if warmup == "peak" else last < ps0, head_values[:, 0], pv0)
    at_last = np.where(kept == 0, np.where(last >= ps0, pv0, warm),
                       np.where(kept == count, pv[first + count - 1], np.where(last == x1, y1, inside)))
    # head knots at or past `last` leave (the last knot is `last` itself)
    n_head = np.where(head_steps[:, 1] < last, n_head, np.minimum(n_head, (last > 0).astype(np.int64)))
    n = n_head + kept + 1
    K = int(n.max())
    steps = np.zeros((R, K), dtype=np.int64)
    values = np.zeros((R, K))
    col = np.arange(2)[None, :]
    hr, hc = np.nonzero(col < n_head[:, None])
    steps[hr, hc], values[hr, hc] = head_steps[hr, hc], head_values[hr, hc]
    local = np.arange(len(ps)) - first[run]
    sel = np.flatnonzero(before)
    steps[run[sel], n_head[run[sel]] + local[sel]] = ps[sel]
    values[run[sel], n_head[run[sel]] + local[sel]] = pv[sel]
    rows = np.arange(R)
    steps[rows, n - 1], values[rows, n - 1] = last, at_last
    filled = np.arange(K)[None, :] < n[:, None]
    bad = np.flatnonzero((filled & (values < 0)).any(1))
    if len(bad):
        raise ValueError(f"run {histories[bad[0]].run!r}: negative learning rate")
    return steps, values, n


def features(histories: list[RunHistory], points: list[np.ndarray], last: np.ndarray, top_pt: np.ndarray,
             warmup: str, lam: float, P: int) -> dict[str, np.ndarray]:
    """lr, s1, s2 at each run's `points` (R, P; padding holds arbitrary values), and peak and
    decayed (R,), for runs eligible for the closed form; `last` (R,) is the last step each run's
    per-step LR would span, `top_pt` its last evaluation point."""
    R = len(histories)
    a, v, n = _knots(histories, last, warmup)
    K = a.shape[1]
    filled = np.arange(K)[None, :] < n[:, None]
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
