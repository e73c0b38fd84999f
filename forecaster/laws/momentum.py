"""Momentum law (Tissue, Wang, Wang 2024): L = L0 + A*S1^-alpha - C*S2."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import DECAYED, PositiveLaw, grid_starts_one, register


@register
class MomentumLaw(PositiveLaw):
    """Loss from the LR area S1 and the momentum-smoothed annealing area S2 (docs/laws.md §1.1)."""

    name = "momentum"
    params = ("L0", "A", "alpha", "C")
    annealing = ("C",)
    amplitude = "C"
    reads = ("log_s1", "s2")

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, C = theta.unbind(-1)
        return L0[:, None] + A[:, None] * torch.exp(-alpha[:, None] * f.log_s1) - C[:, None] * f.s2

    def jacobian(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, C = (v[:, None] for v in theta.unbind(-1))
        power = A * torch.exp(-alpha * f.log_s1)  # parameters are exp(u): d/du = value * d/dvalue
        # built parameter by parameter and handed over as a (R, P, p) view: the fit reads it that way
        return torch.stack([L0.expand_as(power), power, -alpha * f.log_s1 * power, -C * f.s2], 1).transpose(1, 2)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        return torch.stack(momentum_starts(f, y, n), -1)


def momentum_starts(f: Features, y: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """(L0, A, alpha, C) starts (R, n) each: an alpha grid with the linear parameters solved exactly."""
    grid = torch.exp(torch.linspace(-3.5, 0.7, 24, dtype=y.dtype, device=y.device))
    fixed = torch.stack([torch.ones_like(f.log_s1), -f.s2], -1)
    alphas, c = grid_starts_one(fixed, lambda a: torch.exp(-a * f.log_s1), grid, f, y, n)
    c = c[..., [0, 2, 1]]  # (L0, A, C), as the design [1, S1^-alpha, -S2] orders them
    floor = 1e-3 * y.amax(1, keepdim=True)
    # an amplitude started at ~0 sits where its log-space gradient vanishes: start it at a gain of
    # 1 % of the loss over the run's annealing area instead, and let the fit take it down; only
    # where the LR really decayed (a logged LR jittering in its last digits has an area ~0, and an
    # amplitude to match it would fit the noise)
    s2_end = torch.where(f.mask, f.s2, torch.zeros_like(f.s2)).amax(1, keepdim=True)
    decayed = (f.decayed >= DECAYED)[:, None] & (s2_end > 0)
    c_min = torch.where(decayed, 0.01 * y.amin(1, keepdim=True) / s2_end.clamp_min(1e-30), 1e-6)
    return torch.maximum(c[..., 0], floor), c[..., 1].clamp_min(1e-6), alphas, torch.maximum(c[..., 2], c_min)
