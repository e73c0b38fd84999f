"""Turn run histories into padded float64 tensors of LR-schedule features, one row per run.

Every law reads the same `Features`: the LR area S1 at each evaluation step, the momentum-law
annealing area S2, and the LR drops aggregated into at most `max_blocks` blocks for the
multi-power law's double sum. Building them is O(steps) numpy per run; all fitting afterwards
works on the padded tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecaster import lr_segments
from forecaster.device import DTYPE
from forecaster.phases import phase
from forecaster.histories import RunHistory
from forecaster.stats import EPS

WARMUP_MODES = ("linear", "peak", "hold")
MOMENTUM_LAMBDA = 0.999
# the multi-power sum runs over every LR change, the warmup's increases included (as Luo et al.
# define and fit it: with their released parameters this reproduces their published errors)
WARMUP_BLOCKS = 16


_WIDE = {"t", "lr", "s1", "log_s1", "s2", "mask", "drop", "eta_k", "s1_k"}  # fields per point or block


@dataclass
class Features:
    """Per-run LR features at padded evaluation points; rows are runs, padding is masked out."""

    t: torch.Tensor  # (R, P) steps
    lr: torch.Tensor  # (R, P) LR at each point
    s1: torch.Tensor  # (R, P) forward area, warmup included per the warmup mode
    log_s1: torch.Tensor  # (R, P) its log: laws raise S1 to fitted powers as exp(-alpha*log S1)
    s2: torch.Tensor  # (R, P) momentum-law annealing area
    mask: torch.Tensor  # (R, P) bool, real points
    drop: torch.Tensor  # (R, K) LR decrease in each block (0 for padding)
    eta_k: torch.Tensor  # (R, K) LR after each block's changes (their |change|-weighted mean)
    s1_k: torch.Tensor  # (R, K) forward area before each block's changes (likewise weighted)
    peak: torch.Tensor  # (R,) peak LR
    decayed: torch.Tensor  # (R,) LR decreases up to the last point, relative to the peak
    log_n: torch.Tensor  # (R,) log model size where known (RunHistory.size), else 0
    has_lr: torch.Tensor  # (R,) bool

    def rows(self, index: torch.Tensor, only: tuple[str, ...] | None = None) -> "Features":
        """The same features for a subset (or repetition) of rows; with `only`, the per-point and
        per-block fields not named are left out (None): a law evaluated on many repeated rows (the
        band draws, the fit's starts) copies only what it reads."""
        return Features(**{k: None if v is None or (only is not None and k in _WIDE and k not in only) else v[index]
                           for k, v in self.__dict__.items()})

    def points(self, index: torch.Tensor) -> "Features":
        """The same runs at a subset of their points: index (R, K) positions along each row."""
        per_point = {"t", "lr", "s1", "log_s1", "s2", "mask"}
        return Features(**{k: torch.gather(v, 1, index) if k in per_point else v for k, v in self.__dict__.items()})


def lr_per_step(history: RunHistory, last: int, warmup: str = "linear") -> np.ndarray | None:
    """LR at every step 0..last: logged/planned points interpolated, the schedule elsewhere."""
    steps = np.arange(last + 1)
    lr = None
    if history.schedule is not None:
        lr = np.asarray(history.schedule.lr(steps), dtype=np.float64)
    if history.lr_steps is not None and len(history.lr_steps):
        ps, pv = history.lr_steps, history.lr_values
        interp = np.interp(steps, ps, pv)
        if lr is None:
            lr = interp
        else:
            inside = (steps >= ps[0]) & (steps <= ps[-1])
            lr = np.where(inside, interp, lr)
        if history.schedule is None and ps[0] > 0:
            before = steps < ps[0]
            if warmup == "linear":  # the usual linear warmup from 0 that trackers did not log
                lr[before] = pv[0] * steps[before] / ps[0]
            elif warmup == "peak":
                lr[before] = pv.max()
    return lr


def _momentum_area(lr: np.ndarray, lam: float) -> np.ndarray:
    """S2 per step: cumulative momentum of LR decreases; warmup counts as the peak (Tissue et al.)."""
    eta = lr.copy()
    if len(lr):
        top = int(np.argmax(lr))
        eta[:top] = lr[top]
    d = np.zeros_like(eta)
    d[1:] = eta[:-1] - eta[1:]
    return np.cumsum(_momentum(d, lam))


def _momentum(d: np.ndarray, lam: float) -> np.ndarray:
    """m_t = lam * m_(t-1) + d_t, vectorised: m_t = lam^t * sum_(i<=t) d_i lam^-i within chunks
    short enough that lam^-i loses no precision (scipy.signal's filter costs most of a second to
    import, more than the whole recursion on a 1,000-run batch)."""
    out = np.empty_like(d)
    chunk = max(16, int(2.0 / max(-np.log(lam), EPS)))  # lam^-chunk <= e^2
    carry = 0.0
    for start in range(0, len(d), chunk):
        seg = d[start:start + chunk]
        pw = lam ** np.arange(len(seg), dtype=np.float64)
        m = pw * (lam * carry + np.cumsum(seg / pw))
        out[start:start + len(seg)] = m
        carry = m[-1]
    return out


def _blocks(lr: np.ndarray, s1: np.ndarray, max_blocks: int, warmup_blocks: int = 0) -> tuple[np.ndarray, ...]:
    """LR changes aggregated into contiguous blocks: after the peak at most `max_blocks`; the
    warmup's increases (negative drops) into `warmup_blocks` more, 0 to leave them out."""
    peak_at = int(np.argmax(lr))
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    changes = np.flatnonzero(d)
    split = int(np.searchsorted(changes, peak_at, side="right"))
    parts = [_aggregate(changes[split:], d, max_blocks)]
    if warmup_blocks:
        parts.insert(0, _aggregate(changes[:split], d, warmup_blocks))
    starts = np.concatenate([p[0] for p in parts])
    ends = np.concatenate([p[1] for p in parts])
    drop = np.concatenate([p[2] for p in parts])
    if len(drop) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # a block stands for its changes at their |change|-weighted centre: the mean LR area before them
    # and the mean LR after them. Dating them all to the block's start at the LR after its end would
    # overstate the annealing (the more so on long runs, whose blocks are wider): with it, Luo et al.'s
    # released parameters need 64 + 400 blocks to reproduce their published errors; with the centre,
    # 8 + 32 blocks reproduce them (docs/benchmarks.md)
    w = np.abs(d)
    before = np.r_[0.0, s1[:-1]]

    def per_block(x: np.ndarray) -> np.ndarray:
        c = np.cumsum(x)
        return c[ends] - np.where(starts > 0, c[np.maximum(starts - 1, 0)], 0.0)

    tot = per_block(w)
    safe = np.where(tot > 0, tot, 1.0)
    s1_k = np.where(tot > 0, per_block(w * before) / safe, s1[np.maximum(starts - 1, 0)])
    eta_k = np.where(tot > 0, per_block(w * lr) / safe, lr[ends])
    return drop, np.maximum(eta_k, EPS), s1_k


def _aggregate(idx: np.ndarray, d: np.ndarray, max_blocks: int) -> tuple[np.ndarray, ...]:
    """(starts, ends, summed change) of at most `max_blocks` equal-width blocks over `idx`."""
    if len(idx) <= max_blocks:
        return idx, idx, d[idx]
    edges = np.linspace(idx[0], idx[-1] + 1, max_blocks + 1)
    which = np.clip(np.searchsorted(edges, idx, side="right") - 1, 0, max_blocks - 1)
    first = np.r_[0, np.nonzero(np.diff(which))[0] + 1]  # `which` is sorted: runs of a block
    return idx[first], idx[np.r_[first[1:] - 1, len(idx) - 1]], np.add.reduceat(d[idx], first)


def build_features(
    histories: list[RunHistory],
    points: list[np.ndarray],
    *,
    warmup: str = "linear",
    lam: float = MOMENTUM_LAMBDA,
    max_blocks: int = 64,
    blocks: bool = True,
    device: torch.device | None = None,
) -> Features:
    """Features of each run at its evaluation steps `points[i]` (any steps, past or future);
    `blocks=False` leaves out the LR-change blocks, which only the multi-power law reads."""
    with phase("features"):
        return _build_features(histories, points, warmup=warmup, lam=lam, max_blocks=max_blocks, blocks=blocks,
                               device=device)


# per-step values held at once while building features (rows x steps of a block of runs): the
# per-step arithmetic runs on whole blocks of runs, bounded in memory
BLOCK_ELEMENTS = 1 << 21


def _lr_steps(histories: list[RunHistory], last: np.ndarray, warmup: str, skip: frozenset[int] = frozenset()
              ) -> dict[int, np.ndarray]:
    """Per-step LR 0..last[i] of each run that has one (schedule-free laws read `t` only), but the
    runs in `skip`."""
    lrs = {}
    for i, h in enumerate(histories):
        if i in skip:
            continue
        lr = lr_per_step(h, int(last[i]), warmup)
        if lr is not None:
            if np.any(lr < 0):
                raise ValueError(f"run {h.run!r}: negative learning rate")
            lrs[i] = lr
    return lrs


def _lr_blocks(lrs: dict[int, np.ndarray], last: np.ndarray):
    """(run indices, their per-step LR padded into one (runs, steps) array) in blocks whose arrays
    stay within BLOCK_ELEMENTS. The padding repeats a run's last LR, which moves neither its peak,
    its argmax, nor its sums of decreases."""
    rows = np.array(sorted(lrs), dtype=np.int64)
    start = 0
    while start < len(rows):
        end, width = start, 0
        while end < len(rows) and (end == start or (end - start + 1) * max(width, last[rows[end]] + 1) <= BLOCK_ELEMENTS):
            width = max(width, int(last[rows[end]]) + 1)
            end += 1
        blk = rows[start:end]
        start = end
        grid = np.empty((len(blk), width))
        for k, i in enumerate(blk):
            n = len(lrs[i])
            grid[k, :n] = lrs[i]
            grid[k, n:] = lrs[i][-1]
        yield blk, grid


def decay_shares(histories: list[RunHistory], warmup: str = "linear") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run: the LR decreases up to its last observed step and up to the end of its horizon, as
    shares of its peak, and the first step by which half of the former had happened (zeros for a
    run without LR); all runs' per-step LR in blocks."""
    end = np.array([max(int(h.horizon[-1]) if h.horizon is not None and len(h.horizon) else h.last_step,
                        h.last_step) for h in histories], dtype=np.int64)
    seen, planned, half = np.zeros(len(histories)), np.zeros(len(histories)), np.zeros(len(histories), dtype=np.int64)
    lrs = _lr_steps(histories, end, warmup)
    for blk, grid in _lr_blocks(lrs, end):
        top = grid.max(1)
        down = np.zeros_like(grid)
        np.cumsum(np.clip(grid[:, :-1] - grid[:, 1:], 0.0, None), axis=1, out=down[:, 1:])
        down /= np.where(top > 0, top, 1.0)[:, None]
        at = np.array([histories[i].last_step for i in blk], dtype=np.int64)
        s = down[np.arange(len(blk)), at]
        ok = top > 0
        seen[blk] = np.where(ok, s, 0.0)
        planned[blk] = np.where(ok, down[np.arange(len(blk)), end[blk]], 0.0)
        # down rises along each row: the first step reaching seen/2 is the count of steps below it
        half[blk] = np.where(ok, (down < (s / 2)[:, None]).sum(1), 0)
    return seen, planned, half


def _momentum_rows(d: np.ndarray, lam: float) -> np.ndarray:
    """`_momentum` of every row of d (R, T) at once: the same chunks and operations, so the same
    values to the bit."""
    out = np.empty_like(d)
    chunk = max(16, int(2.0 / max(-np.log(lam), EPS)))
    pw_all = lam ** np.arange(min(chunk, d.shape[1]), dtype=np.float64)
    carry = np.zeros((len(d), 1))
    for start in range(0, d.shape[1], chunk):
        seg = d[:, start:start + chunk]
        pw = pw_all[: seg.shape[1]]
        m = pw * (lam * carry + np.cumsum(seg / pw, axis=1))
        out[:, start:start + seg.shape[1]] = m
        carry = m[:, -1:]
    return out


def _build_features(histories, points, *, warmup, lam, max_blocks, blocks, device) -> Features:
    R = len(histories)
    P = max([len(p) for p in points] + [1])
    t = np.ones((R, P))
    lr_at = np.zeros((R, P))
    s1 = np.ones((R, P))
    s2 = np.zeros((R, P))
    mask = np.zeros((R, P), dtype=bool)
    peak = np.ones(R)
    decayed = np.zeros(R)
    has_lr = np.zeros(R, dtype=bool)
    changes = [(np.zeros(0),) * 3] * R
    pts_all = [np.asarray(p, dtype=np.int64) for p in points]
    n = np.array([len(p) for p in pts_all], dtype=np.int64)
    mask[:] = np.arange(P)[None, :] < n[:, None]
    if n.sum():
        t[mask] = np.maximum(np.concatenate(pts_all), 1)
    top_pt = np.array([int(p.max()) if len(p) else 0 for p in pts_all], dtype=np.int64)
    last = np.maximum(top_pt, [h.last_step for h in histories])
    # runs whose LR comes from logged points alone: closed forms over the segments between them
    # (`lr_segments`); the multi-power law's LR-change blocks need the per-step LR
    fast = [] if blocks else [i for i, h in enumerate(histories) if lr_segments.eligible(h)]
    lrs = _lr_steps(histories, last, warmup, skip=frozenset(fast))
    has_lr[list(lrs)] = True
    if fast:
        at = np.asarray(fast, dtype=np.int64)
        seg = lr_segments.features([histories[i] for i in fast], [pts_all[i] for i in fast], last[at], top_pt[at],
                                   warmup, lam, P)
        m = mask[at]
        lr_at[at] = np.where(m, seg["lr"], 0.0)
        s1[at] = np.where(m, seg["s1"], 1.0)
        s2[at] = np.where(m, seg["s2"], 0.0)
        peak[at], decayed[at], has_lr[at] = seg["peak"], seg["decayed"], True
    for blk, grid in _lr_blocks(lrs, last):
        lengths = last[blk] + 1
        col = np.arange(grid.shape[1])[None, :]
        top = np.argmax(grid, axis=1)
        top_lr = grid[np.arange(len(blk)), top]
        before_top = col < top[:, None]
        area = np.where(before_top, top_lr[:, None], grid) if warmup == "peak" else grid
        cum = np.cumsum(area, axis=1)
        # S2 (`_momentum_area`): warmup counted at the peak, momentum of the LR decreases
        eta = np.where(before_top, top_lr[:, None], grid)
        d = np.zeros_like(eta)
        d[:, 1:] = eta[:, :-1] - eta[:, 1:]
        area2 = np.cumsum(_momentum_rows(d, lam), axis=1)
        idx = np.zeros((len(blk), P), dtype=np.int64)
        m = mask[blk]
        idx[m] = np.concatenate([pts_all[i] for i in blk]) if m.any() else idx[m]
        idx = np.clip(idx, 0, (last[blk])[:, None])
        lr_at[blk] = np.where(m, np.take_along_axis(grid, idx, 1), 0.0)
        s1[blk] = np.where(m, np.maximum(np.take_along_axis(cum, idx, 1), EPS), 1.0)
        s2[blk] = np.where(m, np.take_along_axis(area2, idx, 1), 0.0)
        peak[blk] = np.where(top_lr > 0, top_lr, 1.0)
        # LR decreases up to the last point, relative to the peak
        down = np.clip(grid[:, :-1] - grid[:, 1:], 0.0, None)
        down = np.where(col[:, 1:] <= top_pt[blk][:, None], down, 0.0)
        decayed[blk] = down.sum(1) / peak[blk]
        if blocks:
            for k, i in enumerate(blk):
                changes[i] = _blocks(lrs[i], cum[k, : lengths[k]], max_blocks, WARMUP_BLOCKS)
    K = max([len(b[0]) for b in changes] + [1])
    drop = np.zeros((R, K))
    eta_k = np.ones((R, K))
    s1_k = np.zeros((R, K))
    for i, (dr, ek, sk) in enumerate(changes):
        drop[i, : len(dr)], eta_k[i, : len(dr)], s1_k[i, : len(dr)] = dr, ek, sk
    eta_k = np.maximum(eta_k, EPS)

    def tt(a, dtype=DTYPE):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return Features(
        t=tt(t), lr=tt(lr_at), s1=tt(s1), log_s1=tt(np.log(s1)), s2=tt(s2), mask=tt(mask, torch.bool),
        drop=tt(drop), eta_k=tt(eta_k), s1_k=tt(s1_k), peak=tt(peak), decayed=tt(decayed),
        has_lr=tt(has_lr, torch.bool),
        log_n=tt([np.log(h.size) if h.size and h.size > 0 else 0.0 for h in histories]),
    )
