"""Batched L-BFGS: many independent small problems (starts, bootstrap replicates) in one tensor program.

Each row of x is its own problem with its own curvature memory and its own Armijo backtracking line
search; each trial step length is one call of the objective on the rows still searching.
"""

from __future__ import annotations

from typing import Callable

import torch

from forecaster.stats import TINY

# a row has stalled when a step lowers its objective by less than this, relative to |f| (at least 1)
FTOL = 1e-12
# a step enters the curvature memory only when s'y > CURVATURE |s| |y|: a pair with s'y ~ 0 would
# make the inverse-Hessian estimate indefinite
CURVATURE = 1e-12

# fun(x[b, p], rows) -> f[b]: the objective of rows `rows` (all rows when None) at x.
Objective = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _value_and_grad(fun: Objective, x: torch.Tensor, rows: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        f = fun(xg, rows)
        (g,) = torch.autograd.grad(f.sum(), xg)
    return f.detach(), g.detach()


def lbfgs(fun: Objective, x0: torch.Tensor, max_iter: int = 2000, memory: int = 10,
          gtol: float = 1e-9, ftol: float = FTOL, backtracks: int = 25, c1: float = 1e-4
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise each row of x0 (B, p) independently; returns (x, f, iterations used per row)."""
    x = x0.detach().clone()
    B, p = x.shape
    dev, dt = x.device, x.dtype
    f, g = _value_and_grad(fun, x)
    S = torch.zeros(B, memory, p, device=dev, dtype=dt)
    Y = torch.zeros_like(S)
    rho = torch.zeros(B, memory, device=dev, dtype=dt)
    valid = torch.zeros(B, memory, device=dev, dtype=torch.bool)
    active = torch.isfinite(f)
    fails = torch.zeros(B, device=dev, dtype=torch.long)
    stall = torch.zeros(B, device=dev, dtype=torch.long)
    iters = torch.zeros(B, device=dev, dtype=torch.long)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair last; invalid slots contribute nothing
        q = g.clone()
        alphas = []
        for i in range(memory - 1, -1, -1):
            a = torch.where(valid[:, i], rho[:, i] * (S[:, i] * q).sum(-1), torch.zeros_like(f))
            q = q - a[:, None] * Y[:, i]
            alphas.append(a)
        alphas.reverse()
        sy = (S[:, -1] * Y[:, -1]).sum(-1)
        yy = (Y[:, -1] * Y[:, -1]).sum(-1)
        gamma = torch.where(valid[:, -1], sy / yy.clamp_min(TINY), torch.ones_like(f))
        r = gamma[:, None] * q
        for i in range(memory):
            b = torch.where(valid[:, i], rho[:, i] * (Y[:, i] * r).sum(-1), torch.zeros_like(f))
            r = r + S[:, i] * (alphas[i] - b)[:, None]
        d = -r
        gd = (g * d).sum(-1)
        no_mem = ~valid[:, -1]
        bad = ~(gd < 0) | ~torch.isfinite(gd)
        d = torch.where(bad[:, None], -g, d)
        gd = torch.where(bad, -(g * g).sum(-1), gd)
        gnorm = g.abs().sum(-1).clamp_min(TINY)
        # without curvature information take a unit-length (L1) step: in Huber's linear regime the
        # gradient is tiny and a step proportional to it would crawl
        t = torch.where(no_mem | bad, 1.0 / gnorm, torch.ones_like(f))
        # Armijo backtracking, each row on its own; only rows still searching are evaluated
        has = torch.zeros(B, device=dev, dtype=torch.bool)
        pending = active.clone()
        with torch.no_grad():
            for _ in range(backtracks):
                rows = pending.nonzero().squeeze(1)
                if rows.numel() == 0:
                    break
                ft = fun(x[rows] + t[rows, None] * d[rows], rows)
                ok = (ft <= f[rows] + c1 * t[rows] * gd[rows]) & torch.isfinite(ft)
                has[rows[ok]] = True
                pending[rows[ok]] = False
                t[rows[~ok]] *= 0.25
        x_new = torch.where(has[:, None], x + t[:, None] * d, x)
        f_new, g_new = f.clone(), g.clone()
        moved = has.nonzero().squeeze(1)
        if moved.numel():
            f_new[moved], g_new[moved] = _value_and_grad(fun, x_new[moved], moved)
        s = x_new - x
        yv = g_new - g
        sy_new = (s * yv).sum(-1)
        store = has & (sy_new > CURVATURE * (yv * yv).sum(-1).clamp_min(TINY).sqrt() * s.norm(dim=-1))
        S = torch.where(store[:, None, None], torch.cat([S[:, 1:], s[:, None]], 1), S)
        Y = torch.where(store[:, None, None], torch.cat([Y[:, 1:], yv[:, None]], 1), Y)
        rho = torch.where(store[:, None], torch.cat([rho[:, 1:], (1.0 / sy_new.clamp_min(TINY))[:, None]], 1), rho)
        valid = torch.where(store[:, None], torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], 1), valid)
        # a failed line search after a quasi-Newton step: forget curvature and retry steepest descent
        failed = active & ~has
        valid = valid & ~failed[:, None]
        fails = torch.where(failed, fails + 1, torch.zeros_like(fails))
        small = (f - f_new).abs() <= ftol * f_new.abs().clamp_min(1.0)
        stall = torch.where(has & small, stall + 1, torch.where(has, torch.zeros_like(stall), stall))
        iters = iters + active.long()
        done = (fails >= 2) | (stall >= 5) | (g_new.abs().max(-1).values < gtol)
        active = active & ~done
        x, f, g = x_new, f_new, g_new
    return x, f, iters
