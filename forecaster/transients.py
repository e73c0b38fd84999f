"""The first transient: the loss falling from about ln(vocab) at the start of training, which the
LR laws do not describe. The points a law is fitted on, and whether a fit misses a run's early ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from forecaster.eligibility import MIN_POINTS
from forecaster.fit import GroupFit
from forecaster.histories import RunHistory, planned_end
from forecaster.stats import EPS

# share of each run's planned steps that an LR-law fit leaves out where it misses them: the first
# transient, as in Luo et al.'s fits, whose data begin after a warmup of 9 % of the run
# (docs/benchmarks.md)
SKIP_EARLY = 0.1
# an early stretch whose residuals' chunk means exceed this many times their noise is misfit
EARLY_MISFIT = 4.0


def fit_points(h: RunHistory, max_points: int, skip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The observed points a law is fitted on: all, or means of equal-count bins when many; the
    points in the first `skip` share of the run's planned steps are left out (a run seen only
    briefly keeps at least the later half of its points)."""
    steps, values = h.steps, h.values
    n = len(steps)
    if skip > 0 and n >= 2 * MIN_POINTS:
        end = h.meta.get("planned_end") or planned_end(h)
        keep = (steps >= skip * end) | (np.arange(n) >= n // 2)
        steps, values, n = steps[keep], values[keep], int(keep.sum())
    if n <= max_points:
        return steps, values
    edges = np.linspace(0, n, max_points + 1).astype(int)
    counts = np.diff(edges)
    binned = np.round(np.add.reduceat(steps.astype(float), edges[:-1]) / counts).astype(np.int64)
    return binned, np.add.reduceat(values, edges[:-1]) / counts


def misfits_early(fit: GroupFit, feats: Any, y: torch.Tensor, members: torch.Tensor, hist: list[RunHistory],
                  share: float) -> dict[int, bool]:
    """Per fitted row: does the fit miss the row's points in the first `share` of its planned
    steps? Judged by the chunked bias of the log residuals there against what noise alone would
    leave in a chunk mean (EARLY_MISFIT x the fit's robust scale / sqrt(points per chunk))."""
    valid = members >= 0
    g_idx, m_idx = valid.nonzero(as_tuple=True)
    rows = members[g_idx, m_idx]
    u = fit.run_params()[g_idx, m_idx]  # (R, p) in the order of `rows`
    pred = fit.law.predict(fit.law.natural(u), feats.rows(rows))
    r = (torch.log(pred.clamp_min(EPS)) - torch.log(y[rows].clamp_min(EPS))).cpu().numpy()
    t, mask = feats.t[rows].cpu().numpy(), feats.mask[rows].cpu().numpy()
    sigma = fit.sigma[g_idx].cpu().numpy()
    order = rows.tolist()
    early = mask & (t < share * np.array([planned_end(hist[row]) for row in order], dtype=float)[:, None])
    n = early.sum(1)
    noise = sigma / np.sqrt(np.maximum(n, 1) / 5)  # the chunk means' noise
    flags = (n >= 2 * MIN_POINTS) & (chunk_biases(r, early) > np.maximum(EARLY_MISFIT * noise, 1e-3))
    return dict(zip(order, flags.tolist()))


def chunk_bias(diff: np.ndarray, chunks: int = 5) -> float:
    """Mean absolute bias over consecutive chunks: per-point noise averages out, drift does not."""
    return float(np.mean([abs(c.mean()) for c in np.array_split(diff, min(chunks, len(diff)))]))


def chunk_biases(diff: np.ndarray, mask: np.ndarray, chunks: int = 5) -> np.ndarray:
    """`chunk_bias` of every row's masked values (in order), all rows at once (NaN for a row with none):
    the same chunks as `np.array_split`, the first `n % chunks` one value longer."""
    R, P = diff.shape
    n = mask.sum(1)
    k = np.clip(np.minimum(chunks, n), 1, None)
    q, rem = np.divmod(n, k)
    rank = np.cumsum(mask, 1) - 1  # position among the row's masked values
    big = (rem * (q + 1))[:, None]
    cid = np.where(rank < big, rank // (q + 1)[:, None], rem[:, None] + (rank - big) // np.maximum(q, 1)[:, None])
    flat = (np.arange(R)[:, None] * chunks + cid)[mask]
    sums = np.bincount(flat, weights=diff[mask], minlength=R * chunks).reshape(R, chunks)
    counts = np.bincount(flat, minlength=R * chunks).reshape(R, chunks)
    means = np.abs(sums) / np.maximum(counts, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, means.sum(1) / np.minimum(chunks, n), np.nan)
