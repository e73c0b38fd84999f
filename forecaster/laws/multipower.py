"""Multi-power law (Luo et al., ICLR 2025): power-law decay plus a saturating annealing bonus."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import DECAYED, Law, grid_starts, register
from forecaster.stats import EPS

# docs/laws.md §1.2: C, beta, gamma stay near these across model sizes; used only to start the fit
_PRIOR = {"C": 2.0, "beta": 0.6, "gamma": 0.65}


@register
class MultiPowerLaw(Law):
    """L = L0 + A*(S1+S_W)^-alpha - B*sum_k drop_k*G(eta_k^-gamma * S_k(t)), G(x)=1-(Cx+1)^-beta."""

    name = "multipower"
    params = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
    annealing = ("B", "C", "beta", "gamma")
    amplitude = "B"
    uses_blocks = True
    shape_prior = _PRIOR
    max_points = 128

    def natural(self, u: torch.Tensor) -> torch.Tensor:
        pos = torch.exp(u[..., :5])
        unit = torch.sigmoid(u[..., 5:])  # beta, gamma in (0, 1)
        return torch.cat([pos, unit], -1)

    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        pos = torch.log(theta[..., :5].clamp_min(EPS))
        unit = torch.logit(theta[..., 5:].clamp(1e-6, 1 - 1e-6))
        return torch.cat([pos, unit], -1)

    @staticmethod
    def loss_drop(f: Features, C, beta, gamma) -> torch.Tensor:
        """Sum over LR-drop blocks of drop_k * G(...), (R, P); C, beta, gamma are (R,)."""
        sk = (f.s1.unsqueeze(-1) - f.s1_k.unsqueeze(1)).clamp_min(0.0)  # (R, P, K)
        x = (f.eta_k ** -gamma[:, None]).unsqueeze(1) * sk
        g = -torch.expm1(-beta[:, None, None] * torch.log1p(C[:, None, None] * x))
        return (f.drop.unsqueeze(1) * g).sum(-1)

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, B, C, beta, gamma = theta.unbind(-1)
        ld = self.loss_drop(f, C, beta, gamma)
        return L0[:, None] + A[:, None] * torch.exp(-alpha[:, None] * f.log_s1) - B[:, None] * ld

    def jacobian(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, B, C, beta, gamma = theta.unbind(-1)
        sk = (f.s1.unsqueeze(-1) - f.s1_k.unsqueeze(1)).clamp_min(0.0)  # (R, P, K)
        log_eta = torch.log(f.eta_k).unsqueeze(1)
        x = torch.exp(-gamma[:, None, None] * log_eta) * sk
        cx1 = torch.log1p(C[:, None, None] * x)  # log(Cx + 1)
        pw = torch.exp(-beta[:, None, None] * cx1)  # (Cx + 1)^-beta
        d = f.drop.unsqueeze(1)
        dGdx = beta[:, None, None] * C[:, None, None] * pw / (1.0 + C[:, None, None] * x)
        ld = (d * (1.0 - pw)).sum(-1)
        dC = (d * dGdx * x).sum(-1)  # C dG/dC = x dG/dx
        dbeta = (d * pw * cx1).sum(-1)
        dgamma = (d * dGdx * (-log_eta) * x).sum(-1)
        power = A[:, None] * torch.exp(-alpha[:, None] * f.log_s1)
        Bc = B[:, None]
        # chain rule to the unconstrained parameters: exp for the first five, sigmoid for beta, gamma
        return torch.stack([
            L0[:, None].expand_as(power), power, -alpha[:, None] * f.log_s1 * power, -Bc * ld, -Bc * dC,
            -Bc * dbeta * (beta * (1 - beta))[:, None], -Bc * dgamma * (gamma * (1 - gamma))[:, None],
        ], -1)

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        R = y.shape[0]
        full = lambda v: torch.full((R,), v, dtype=y.dtype, device=y.device)  # noqa: E731
        ld = self.loss_drop(f, full(_PRIOR["C"]), full(_PRIOR["beta"]), full(_PRIOR["gamma"]))
        grid = torch.exp(torch.linspace(-3.5, 0.7, 24, dtype=y.dtype, device=y.device))
        alphas, c = grid_starts(
            lambda a: torch.stack([torch.ones_like(f.s1), f.s1 ** -a, -ld], -1), grid, f, y, n
        )
        floor = 1e-3 * y.amax(1, keepdim=True)
        L0 = torch.maximum(c[..., 0], floor)
        A = c[..., 1].clamp_min(1e-6)
        # as for the momentum law's C: an amplitude started at ~0 would stay there (its log-space
        # gradient vanishes), so it starts no lower than a 1 % gain over the run (the change of
        # LD, which the warmup's increases make negative at first)
        span = (torch.where(f.mask, ld, -torch.inf).amax(1, keepdim=True)
                - torch.where(f.mask, ld, torch.inf).amin(1, keepdim=True))
        decayed = (f.decayed >= DECAYED)[:, None] & (span > 0)
        B = torch.maximum(c[..., 2], torch.where(decayed, 0.01 * y.amin(1, keepdim=True) / span.clamp_min(1e-30),
                                                 1e-3))
        const = lambda v: torch.full_like(L0, v)  # noqa: E731
        return torch.stack([L0, A, alphas, B, const(_PRIOR["C"]), const(_PRIOR["beta"]), const(_PRIOR["gamma"])], -1)
