"""The Chinchilla form L(N, D) = E + A N^-alpha + B D^-beta (docs/laws.md §2.1, Chinchilla), fitted in batches.

Two objectives: squared error on raw loss (solved exactly by variable projection: a dense
(alpha, beta) grid, NNLS for (E, A, B), per-replicate zoom) and Hoffmann's Huber on log loss
(started from a variable-projection fit weighted to relative error, then all five parameters
refined by batched L-BFGS on the Huber sum). Hoffmann's own 4,500-start L-BFGS grid is kept as a
cross-check. N and D are centred on their geometric means inside the fit for conditioning; the
parameters returned are in the caller's units.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from forecaster.scaling.laws.base import FitData, LossLaw, register
from forecaster.scaling.lbfgs import lbfgs
from forecaster.scaling.varpro import Basis, varpro
from forecaster.stats import TINY, huber

PARAMS = ("E", "A", "B", "alpha", "beta")
HUBER_DELTA = 1e-3
# Exponent search range and coarse grid spacing: covers every published LM fit (0.05 - 1).
EXP_LO, EXP_HI, GRID_STEP = 0.0, 2.5, 0.05


def basis(lN: torch.Tensor, lD: torch.Tensor, tied: bool = False) -> Basis:
    """Features [1, N^-alpha, D^-beta] for exponents nl[..., (alpha, beta)] (or nl[..., (alpha,)] tied)."""
    def phi(nl: torch.Tensor) -> torch.Tensor:
        a = nl[..., 0:1]
        b = a if tied else nl[..., 1:2]
        fa = torch.exp(-a * lN)
        return torch.stack((torch.ones_like(fa), fa, torch.exp(-b * lD)), -1)
    return phi


def huber_log_objective(lN: torch.Tensor, lD: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                        delta: float = HUBER_DELTA, tied: bool = False):
    """Sum over points of w * Huber(LSE(a - alpha lN, b - beta lD, e) - log y) for x = (e, a, b, alpha, beta).

    Sum, not mean (docs/laws.md §2.1, Chinchilla): the mean made the original optimiser stop early.
    """
    logy = torch.log(y)

    def fun(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        ly = logy if rows is None else logy[rows]
        ww = w if rows is None else w[rows]
        e, a, b, al = x[:, 0:1], x[:, 1:2], x[:, 2:3], x[:, 3:4]
        be = al if tied else x[:, 4:5]
        t1, t2 = a - al * lN, b - be * lD
        # log-sum-exp of three terms written out: elementwise, far faster than a size-3 reduction
        m = torch.maximum(torch.maximum(t1, t2), e)
        pred = m + torch.log(torch.exp(t1 - m) + torch.exp(t2 - m) + torch.exp(e - m))
        return (ww * huber(pred - ly, delta)).sum(-1)
    return fun


def to_natural(coef: torch.Tensor, exps: torch.Tensor, data: FitData) -> torch.Tensor:
    """(E, A', B') at centred N, D plus (alpha, beta) -> (E, A, B, alpha, beta) in caller units."""
    al, be = exps[:, 0], exps[:, -1]
    A = coef[:, 1] * torch.exp(al * math.log(data.N0))
    B = coef[:, 2] * torch.exp(be * math.log(data.D0))
    return torch.stack((coef[:, 0], A, B, al, be), -1)


def varpro_mse(data: FitData, tied: bool = False, weights: torch.Tensor | None = None,
               grid_step: float = GRID_STEP) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact weighted least-squares fit on raw loss: ((B, 5) natural parameters, (B,) RSS)."""
    w = data.w if weights is None else weights
    k = 1 if tied else 2
    axis = torch.arange(EXP_LO + grid_step, EXP_HI + 1e-9, grid_step)
    lN, lD = data.lN, data.lD
    sep = None if tied else (lambda a: torch.exp(-a[..., None] * lN), lambda b: torch.exp(-b[..., None] * lD))
    res = varpro(basis(lN, lD, tied), [axis] * k, data.y, w, nonneg=(True, True, True),
                 lo=[1e-4] * k, hi=[2 * EXP_HI] * k, separable=sep)
    exps = res.nl if not tied else res.nl.expand(-1, 2)
    return to_natural(res.coef, exps, data), res.rss


def natural_to_x(theta: torch.Tensor, data: FitData, tied: bool = False) -> torch.Tensor:
    """Natural parameters -> Hoffmann coordinates (log E, log A', log B', alpha[, beta]) at centred N, D."""
    E, A, B, al, be = theta.unbind(-1)
    floor = 1e-8
    a = torch.log(A.clamp_min(TINY)) - al * math.log(data.N0)
    b = torch.log(B.clamp_min(TINY)) - be * math.log(data.D0)
    cols = [torch.log(E.clamp_min(floor)), a.clamp_min(math.log(floor)), b.clamp_min(math.log(floor)), al]
    if not tied:
        cols.append(be)
    return torch.stack(cols, -1)


def x_to_natural(x: torch.Tensor, data: FitData, tied: bool = False) -> torch.Tensor:
    """Hoffmann coordinates at centred N, D -> (E, A, B, alpha, beta) in caller units."""
    al = x[:, 3]
    be = al if tied else x[:, 4]
    return torch.stack((torch.exp(x[:, 0]), torch.exp(x[:, 1] + al * math.log(data.N0)),
                        torch.exp(x[:, 2] + be * math.log(data.D0)), al, be), -1)


def fit_huber_log(data: FitData, delta: float = HUBER_DELTA, tied: bool = False, max_iter: int = 3000
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber on log loss: VarPro start on relative squared error, then batched L-BFGS on all parameters."""
    start, _ = varpro_mse(data, tied=tied, weights=data.w / (data.y * data.y))
    x0 = natural_to_x(start, data, tied)
    fun = huber_log_objective(data.lN, data.lD, data.y, data.w, delta, tied)
    x, f, _ = lbfgs(fun, x0, max_iter=max_iter)
    return x_to_natural(x, data, tied), f


def hoffmann_starts(tied: bool = False) -> torch.Tensor:
    """Hoffmann et al.'s grid of starts in raw log N, log D: 4,500 points (docs/laws.md §2.1, Chinchilla)."""
    ex = torch.arange(0.0, 2.01, 0.5)
    e = torch.arange(-1.0, 1.01, 0.5)
    ab = torch.arange(0.0, 25.01, 5.0)
    if tied:
        return torch.cartesian_prod(e, ab, ab, ex)
    return torch.cartesian_prod(e, ab, ab, ex, ex)


def fit_hoffmann_grid(N: np.ndarray, D: np.ndarray, y: torch.Tensor, w: torch.Tensor,
                      delta: float = HUBER_DELTA, max_iter: int = 3000, starts: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-check: L-BFGS from every Hoffmann start on raw log N, D for one problem (y, w: (n,)).

    Returns (best natural parameters (5,), its objective, all final objectives (one per start)).
    """
    dev, dt = y.device, y.dtype
    x0 = (hoffmann_starts() if starts is None else starts).to(device=dev, dtype=dt)
    S = x0.shape[0]
    lN = torch.as_tensor(np.log(N), device=dev, dtype=dt)
    lD = torch.as_tensor(np.log(D), device=dev, dtype=dt)
    fun = huber_log_objective(lN, lD, y[None].expand(S, -1), w[None].expand(S, -1), delta)
    x, f, _ = lbfgs(fun, x0, max_iter=max_iter)
    f = torch.where(torch.isfinite(f), f, torch.full_like(f, float("inf")))
    i = int(f.argmin())
    xb = x[i]
    theta = torch.stack((xb[0].exp(), xb[1].exp(), xb[2].exp(), xb[3], xb[4]))
    return theta, f[i], f


def predict(theta: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Loss at (N, D) for parameter rows theta[..., (E, A, B, alpha, beta)] (broadcasts)."""
    E, A, B, al, be = (theta[..., i] for i in range(5))
    return E + A * np.power(N, -al) + B * np.power(D, -be)


def compute_optimal(theta: np.ndarray, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal (N, D) for budget C = 6ND (docs/laws.md §2.1, Chinchilla), in the units the parameters use."""
    _, A, B, al, be = (theta[..., i] for i in range(5))
    G = np.power(al * A / (be * B), 1.0 / (al + be))
    base = np.asarray(C, dtype=np.float64) / 6.0
    return G * np.power(base, be / (al + be)), np.power(base, al / (al + be)) / G


@register
class Chinchilla(LossLaw):
    """Hoffmann et al.'s form, fitted by Huber on log loss as they did (or exactly, by squared error)."""

    name = "chinchilla"
    params = PARAMS
    formula = "L = E + A N^-alpha + B D^-beta"
    reference = "Hoffmann et al. 2022"
    default_objective = "huber-log"
    zero_bound = ("E", "A", "B")
    edges = {"alpha": (2e-4, 2 * EXP_HI - 1e-6), "beta": (2e-4, 2 * EXP_HI - 1e-6)}

    def fit_data(self, data: FitData, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
        return varpro_mse(data) if objective == "mse" else fit_huber_log(data)

    def predict(self, theta: np.ndarray, *inputs: np.ndarray | float) -> np.ndarray:
        return predict(theta, *inputs)

    def split(self, theta: np.ndarray, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return compute_optimal(theta, C)

    def chinchilla_form(self, theta: np.ndarray) -> np.ndarray:
        return theta
