"""Exponential saturation: L = c + a*exp(-b*t), for curves with no LR schedule."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import PositiveLaw, grid_starts, register


@register
class Exponential(PositiveLaw):
    """Schedule-free exponential approach to an asymptote (fast-saturating curves)."""

    name = "exponential"
    params = ("c", "a", "b")
    needs_lr = False

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        c, a, b = theta.unbind(-1)
        return c[:, None] + a[:, None] * torch.exp(-b[:, None] * f.t)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        tmax = (f.t * f.mask).amax(1).clamp_min(1.0)
        rel = torch.exp(torch.linspace(-3.0, 2.5, 24, dtype=y.dtype, device=y.device))
        # grid over b*tmax so the grid is scale-free; each run gets its own b values
        bs, c = grid_starts(
            lambda r: torch.stack([torch.ones_like(f.t), torch.exp(-(r / tmax)[:, None] * f.t)], -1), rel, f, y, n
        )
        floor = 1e-3 * y.amax(1, keepdim=True)
        return torch.stack([torch.maximum(c[..., 0], floor), c[..., 1].clamp_min(1e-6), bs / tmax[:, None]], -1)
