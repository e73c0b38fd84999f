"""Log-power (Domhan et al. 2015): L = c + a / (1 + (t/e^b)^k), for curves with no LR schedule."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import Law, grid_starts, register
from forecaster.stats import EPS


@register
class LogPower(Law):
    """Schedule-free sigmoid in log-step: a plateau, a power-law fall, an asymptote."""

    name = "logpower"
    params = ("c", "a", "b", "k")
    needs_lr = False

    def natural(self, u: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.exp(u[..., :2]), u[..., 2:3], torch.exp(u[..., 3:])], -1)

    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.log(theta[..., :2].clamp_min(EPS)), theta[..., 2:3],
                          torch.log(theta[..., 3:].clamp_min(EPS))], -1)

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        c, a, b, k = theta.unbind(-1)
        z = k[:, None] * (torch.log(f.t) - b[:, None])
        return c[:, None] + a[:, None] * torch.sigmoid(-z)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        logt = torch.log(f.t)
        lo = torch.where(f.mask, logt, torch.inf).amin(1)
        hi = torch.where(f.mask, logt, -torch.inf).amax(1)
        rel = torch.linspace(-1.0, 1.5, 16, dtype=y.dtype, device=y.device)
        k0 = 1.0
        mids, c = grid_starts(
            lambda r: torch.stack(
                [torch.ones_like(f.t), torch.sigmoid(-k0 * (logt - (lo + r * (hi - lo))[:, None]))], -1
            ),
            rel, f, y, n,
        )
        b = lo[:, None] + mids * (hi - lo)[:, None]
        floor = 1e-3 * y.amax(1, keepdim=True)
        return torch.stack([torch.maximum(c[..., 0], floor), c[..., 1].clamp_min(1e-6), b,
                            torch.full_like(b, k0)], -1)
