"""Variable projection, batched: a law linear in some coefficients is searched only over the rest.

For fixed nonlinear parameters (exponents) the weighted squared error is a quadratic in the linear
coefficients, solved exactly by non-negative least squares. A dense shared grid of the nonlinear
parameters is evaluated for every bootstrap replicate in one pass (the weighted normal equations of
all replicates and grid points come from two matrix products), then each replicate zooms in on its
own best cell. Every small NNLS is solved exactly by enumerating active sets (p <= 3: 8 cases).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from forecaster.stats import EPS

# basis(nl[..., k]) -> features[..., n, p]; the law is features @ coefficients.
Basis = Callable[[torch.Tensor], torch.Tensor]

# Elements per intermediate tensor: bounds memory on a shared machine, not a tuning knob.
_CHUNK_ELEMS = 3_000_000


def _subset_solve(g: dict[tuple[int, int], torch.Tensor], h: list[torch.Tensor], S: tuple[int, ...]
                  ) -> list[torch.Tensor]:
    """Closed-form solution of the normal equations restricted to support S (|S| <= 3)."""
    if len(S) == 1:
        (i,) = S
        return [h[i] / g[i, i]]
    if len(S) == 2:
        i, j = S
        det = g[i, i] * g[j, j] - g[i, j] * g[i, j]
        return [(g[j, j] * h[i] - g[i, j] * h[j]) / det, (g[i, i] * h[j] - g[i, j] * h[i]) / det]
    i, j, k = S
    a, b, c, d, e, f = g[i, i], g[i, j], g[i, k], g[j, j], g[j, k], g[k, k]
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * c00 + b * c01 + c * c02
    hi, hj, hk = h[i], h[j], h[k]
    return [(c00 * hi + c01 * hj + c02 * hk) / det, (c01 * hi + c11 * hj + c12 * hk) / det,
            (c02 * hi + c12 * hj + c22 * hk) / det]


def nnls_entries(g: dict[tuple[int, int], torch.Tensor], h: list[torch.Tensor], c: torch.Tensor,
                 nonneg: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sign-constrained least squares from symmetric normal-equation entries g[i, j] (i <= j).

    Minimises c - 2 theta.h + theta' G theta subject to theta_j >= 0 where nonneg[j]; returns
    (theta (..., p), rss (...)). The optimum is the unconstrained solution on its own support, so
    the best feasible support solution is the answer; p <= 3 gives at most 8 closed-form cases,
    each a handful of elementwise operations on contiguous tensors.
    """
    p = len(h)
    if p > 3:
        raise ValueError("nnls_entries handles at most 3 linear coefficients")
    # A tiny relative ridge keeps exactly collinear grid points (exponent -> 0) solvable.
    ridge = EPS * sum(g[i, i] for i in range(p)) / p
    g = {**g, **{(i, i): g[i, i] + ridge for i in range(p)}}
    for i in range(p):
        for j in range(i):
            g[i, j] = g[j, i]
    free = [j for j in range(p) if not nonneg[j]]
    zero = torch.zeros_like(c)
    best_rss = torch.full_like(c, float("inf")) if free else c.clone()
    best = [zero] * p
    for mask in itertools.product((False, True), repeat=p):
        S = tuple(j for j in range(p) if mask[j])
        if not S or any(j not in S for j in free):
            continue  # empty support handled by the initial value; free coefficients always in
        sol = _subset_solve(g, h, S)
        rss = c - sum(t * h[j] for t, j in zip(sol, S))  # = c - 2 t.h + t'Gt at the restricted optimum
        ok = torch.isfinite(rss)
        for t, j in zip(sol, S):
            if nonneg[j]:
                ok = ok & (t >= 0)
        better = ok & (rss < best_rss)
        best_rss = torch.where(better, rss, best_rss)
        for t, j in zip(sol, S):
            best[j] = torch.where(better, t, best[j])
        for j in range(p):
            if j not in S:
                best[j] = torch.where(better, zero, best[j])
    return torch.stack(best, -1), best_rss.clamp_min(0.0)


def nnls_normal(G: torch.Tensor, h: torch.Tensor, c: torch.Tensor, nonneg: Sequence[bool]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`nnls_entries` for normal equations given as G (..., p, p), h (..., p), c (...)."""
    p = G.shape[-1]
    g = {(i, j): G[..., i, j].contiguous() for i in range(p) for j in range(i, p)}
    return nnls_entries(g, [h[..., i].contiguous() for i in range(p)], c, nonneg)


@dataclass
class VarProResult:
    """Best nonlinear parameters, linear coefficients and weighted RSS for each replicate."""

    nl: torch.Tensor  # (B, k)
    coef: torch.Tensor  # (B, p)
    rss: torch.Tensor  # (B,)


def grid_search(basis: Basis, grid: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                nonneg: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted profile RSS over a grid shared by all replicates; returns best (nl (B,k), rss (B,)).

    y, w: (B, n). The normal equations of every (replicate, grid point) pair come from two GEMMs
    (only the p(p+1)/2 distinct entries of each symmetric system).
    """
    B, n = w.shape
    phi_all = basis(grid)  # (G, n, p)
    G_, _, p = phi_all.shape
    pairs = [(i, j) for i in range(p) for j in range(i, p)]
    wy = w * y
    c = (wy * y).sum(-1)  # (B,)
    best_rss = torch.full((B,), float("inf"), device=w.device, dtype=w.dtype)
    best_idx = torch.zeros(B, dtype=torch.long, device=w.device)
    step = max(1, _CHUNK_ELEMS // max(1, B * (len(pairs) + p) * 4))
    for g0 in range(0, G_, step):
        phi = phi_all[g0:g0 + step].permute(2, 1, 0)  # (p, n, g)
        g = phi.shape[2]
        prods = torch.stack([phi[i] * phi[j] for i, j in pairs], 1).reshape(n, -1)  # (n, pairs*g)
        XWX = (w @ prods).reshape(B, len(pairs), g)
        XWy = (wy @ phi.permute(1, 0, 2).reshape(n, p * g)).reshape(B, p, g)
        entries = {pr: XWX[:, e] for e, pr in enumerate(pairs)}
        _, rss = nnls_entries(entries, [XWy[:, i] for i in range(p)], c[:, None].expand(B, g), nonneg)
        r_min, r_arg = rss.min(-1)
        better = r_min < best_rss
        best_rss = torch.where(better, r_min, best_rss)
        best_idx = torch.where(better, r_arg + g0, best_idx)
    return grid[best_idx], best_rss


def solve_at(basis: Basis, nl: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
             nonneg: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients and RSS at per-replicate nonlinear parameters nl (B, Q, k): ((B,Q,p), (B,Q)).

    The normal-equation entries of all Q candidates of a replicate come from one batched matrix
    product against that replicate's weights.
    """
    phi = basis(nl)  # (B, Q, n, p)
    B, Q, n, p = phi.shape
    pairs = [(i, j) for i in range(p) for j in range(i, p)]
    ph = phi.permute(0, 3, 1, 2)  # (B, p, Q, n)
    prods = torch.stack([ph[:, i] * ph[:, j] for i, j in pairs], 1).reshape(B, -1, n)
    XWX = torch.bmm(prods, w[:, :, None]).reshape(B, len(pairs), Q)
    XWy = torch.bmm(ph.reshape(B, p * Q, n), (w * y)[:, :, None]).reshape(B, p, Q)
    c = (w * y * y).sum(-1)[:, None].expand(B, Q)
    entries = {pr: XWX[:, e] for e, pr in enumerate(pairs)}
    return nnls_entries(entries, [XWy[:, i] for i in range(p)], c, nonneg)


def zoom(basis: Basis, center: torch.Tensor, step: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
         y: torch.Tensor, w: torch.Tensor, nonneg: Sequence[bool], levels: int = 13,
         points: int = 5, shrink: float = 3.0) -> VarProResult:
    """Refine each replicate's grid optimum by local grids that shrink every level.

    A level's grid spans +-step around the current best (spacing step/2 with 5 points); the next
    spans +-step/3, still wider than the quarter-step by which the best grid point can miss.
    """
    B, k = center.shape
    lin = torch.linspace(-1.0, 1.0, points, device=center.device, dtype=center.dtype)
    offsets = torch.cartesian_prod(*([lin] * k)).reshape(-1, k)  # (Q, k)
    n = y.shape[1]
    p = basis(center[:1, None]).shape[-1]
    chunk = max(1, _CHUNK_ELEMS // max(1, offsets.shape[0] * n * (p * (p + 1) // 2 + 2 * p)))
    step = step.clone()
    for _ in range(levels):
        cand = torch.minimum(torch.maximum(center[:, None, :] + offsets * step, lo), hi)  # (B, Q, k)
        new = []
        for b0 in range(0, B, chunk):
            _, rss = solve_at(basis, cand[b0:b0 + chunk], y[b0:b0 + chunk], w[b0:b0 + chunk], nonneg)
            new.append(cand[b0:b0 + chunk][torch.arange(rss.shape[0]), rss.argmin(-1)])
        center = torch.cat(new)
        step = step / shrink
    coefs, rsss = [], []
    for b0 in range(0, B, chunk):
        coef, rss = solve_at(basis, center[b0:b0 + chunk, None], y[b0:b0 + chunk], w[b0:b0 + chunk], nonneg)
        coefs.append(coef[:, 0])
        rsss.append(rss[:, 0])
    return VarProResult(nl=center, coef=torch.cat(coefs), rss=torch.cat(rsss))


def zoom_separable(feats: Sequence[Callable[[torch.Tensor], torch.Tensor]], center: torch.Tensor,
                   step: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                   nonneg: Sequence[bool], levels: int = 13, points: int = 5, shrink: float = 3.0
                   ) -> torch.Tensor:
    """`zoom` for the basis [1, f0(nl_0), f1(nl_1)] (one feature per exponent, e.g. Chinchilla).

    Each feature depends on one axis only, so the moments of all points x points candidates come
    from per-axis features and one batched matrix product for the cross term: the cost per level
    grows with `points`, not its square. Returns the refined centres (B, 2).
    """
    f0, f1 = feats
    B = center.shape[0]
    lin = torch.linspace(-1.0, 1.0, points, device=center.device, dtype=center.dtype)
    n = y.shape[1]
    chunk = max(1, _CHUNK_ELEMS // max(1, points * n * 6))
    step = step.clone()
    for _ in range(levels):
        out = []
        for b0 in range(0, B, chunk):
            cb, wb, yb = center[b0:b0 + chunk], w[b0:b0 + chunk], y[b0:b0 + chunk]
            va = torch.clamp(cb[:, 0:1] + lin * step[0], lo[0], hi[0])  # (b, L)
            vb = torch.clamp(cb[:, 1:2] + lin * step[1], lo[1], hi[1])
            fa, fb = f0(va), f1(vb)  # (b, L, n)
            wfa, wfb = fa * wb[:, None, :], fb * wb[:, None, :]
            wy = wb * yb
            shape = (cb.shape[0], points, points)
            g = {(0, 0): wb.sum(-1)[:, None, None].expand(shape),
                 (0, 1): wfa.sum(-1)[:, :, None].expand(shape),
                 (0, 2): wfb.sum(-1)[:, None, :].expand(shape),
                 (1, 1): (wfa * fa).sum(-1)[:, :, None].expand(shape),
                 (2, 2): (wfb * fb).sum(-1)[:, None, :].expand(shape),
                 (1, 2): torch.bmm(wfa, fb.transpose(1, 2))}
            h = [wy.sum(-1)[:, None, None].expand(shape),
                 torch.bmm(fa, wy[:, :, None]).expand(shape),
                 torch.bmm(fb, wy[:, :, None]).transpose(1, 2).expand(shape)]
            c = (wy * yb).sum(-1)[:, None, None].expand(shape)
            _, rss = nnls_entries(g, h, c, nonneg)
            best = rss.reshape(shape[0], -1).argmin(-1)
            rows = torch.arange(shape[0], device=center.device)
            out.append(torch.stack((va[rows, best // points], vb[rows, best % points]), -1))
        center = torch.cat(out)
        step = step / shrink
    return center


def varpro(basis: Basis, axes: Sequence[torch.Tensor], y: torch.Tensor, w: torch.Tensor,
           nonneg: Sequence[bool], lo: Sequence[float], hi: Sequence[float], levels: int = 13,
           separable: Sequence[Callable[[torch.Tensor], torch.Tensor]] | None = None) -> VarProResult:
    """Dense grid over the nonlinear parameters (one tensor per axis), then per-replicate zoom.

    `separable`: per-axis feature functions when the basis is [1, f0(nl_0), f1(nl_1)] (faster zoom).
    """
    dev, dt = w.device, w.dtype
    axes = [a.to(device=dev, dtype=dt) for a in axes]
    grid = torch.cartesian_prod(*axes).reshape(-1, len(axes))
    best, _ = grid_search(basis, grid, y, w, nonneg)
    step = torch.stack([(a[1:] - a[:-1]).max() for a in axes])
    lo_t = torch.tensor(list(lo), device=dev, dtype=dt)
    hi_t = torch.tensor(list(hi), device=dev, dtype=dt)
    if separable is not None and len(axes) == 2:
        center = zoom_separable(separable, best, step, lo_t, hi_t, y, w, nonneg, levels=levels)
        return zoom(basis, center, step, lo_t, hi_t, y, w, nonneg, levels=0)
    return zoom(basis, best, step, lo_t, hi_t, y, w, nonneg, levels=levels)
