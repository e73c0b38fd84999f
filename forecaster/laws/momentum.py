"""Momentum law (Tissue, Wang, Wang 2024): L = L0 + A*S1^-alpha - C*S2."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import Law, grid_starts, register


@register
class MomentumLaw(Law):
    """Loss from the LR area S1 and the momentum-smoothed annealing area S2 (laws.md 1.1)."""

    name = "momentum"
    params = ("L0", "A", "alpha", "C")
    annealing = ("C",)
    amplitude = "C"

    def natural(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(u)

    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.log(theta.clamp_min(1e-12))

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, C = theta.unbind(-1)
        return L0[:, None] + A[:, None] * torch.exp(-alpha[:, None] * f.log_s1) - C[:, None] * f.s2

    def jacobian(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, C = (v[:, None] for v in theta.unbind(-1))
        power = A * torch.exp(-alpha * f.log_s1)  # parameters are exp(u): d/du = value * d/dvalue
        return torch.stack([L0.expand_as(power), power, -alpha * f.log_s1 * power, -C * f.s2], -1)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        grid = torch.exp(torch.linspace(-3.5, 0.7, 24, dtype=y.dtype, device=y.device))
        alphas, c = grid_starts(
            lambda a: torch.stack([torch.ones_like(f.s1), f.s1 ** -a, -f.s2], -1), grid, f, y, n
        )
        floor = 1e-3 * y.amax(1, keepdim=True)
        L0 = torch.maximum(c[..., 0], floor)
        A = c[..., 1].clamp_min(1e-6)
        C = c[..., 2].clamp_min(1e-6)
        return torch.stack([L0, A, alphas, C], -1)
