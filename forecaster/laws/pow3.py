"""pow3 (Domhan et al. 2015): L = c + a*t^-alpha, for curves with no LR schedule."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import PositiveLaw, grid_starts, register


@register
class Pow3(PositiveLaw):
    """Schedule-free power law in the step count."""

    name = "pow3"
    params = ("c", "a", "alpha")
    needs_lr = False

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        c, a, alpha = theta.unbind(-1)
        return c[:, None] + a[:, None] * f.t ** (-alpha[:, None])

    def jacobian(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        c, a, alpha = (v[:, None] for v in theta.unbind(-1))
        logt = torch.log(f.t)
        power = a * torch.exp(-alpha * logt)  # parameters are exp(u): d/du = value * d/dvalue
        return torch.stack([c.expand_as(power), power, -alpha * logt * power], -1)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        grid = torch.exp(torch.linspace(-4.0, 1.0, 24, dtype=y.dtype, device=y.device))
        alphas, c = grid_starts(lambda a: torch.stack([torch.ones_like(f.t), f.t ** -a], -1), grid, f, y, n)
        floor = 1e-3 * y.amax(1, keepdim=True)
        return torch.stack([torch.maximum(c[..., 0], floor), c[..., 1].clamp_min(1e-6), alphas], -1)
