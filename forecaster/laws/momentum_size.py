"""Momentum law with model size (Tissue et al. 2024): one law for the whole curves of many sizes."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import Law, grid_starts, register


@register
class MomentumSizeLaw(Law):
    """L(t, N) = L0 + A*S1^-alpha + B*N^-beta - C*S2*N^gamma, every parameter shared by the group.

    Fitted jointly on runs of several sizes (RunHistory.size), it predicts the whole curve of a
    size that was never trained: the curve form of a scaling law, not only its end point.
    """

    name = "momentum_size"
    params = ("L0", "A", "alpha", "B", "beta", "C", "gamma")
    annealing = params  # no per-run deviations: size is what tells runs apart
    needs_size = True

    def natural(self, u: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.exp(u[..., :6]), u[..., 6:]], -1)  # gamma may have either sign

    def unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.log(theta[..., :6].clamp_min(1e-12)), theta[..., 6:]], -1)

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, B, beta, C, gamma = (v[:, None] for v in theta.unbind(-1))
        n = f.log_n[:, None]
        return (L0 + A * torch.exp(-alpha * f.log_s1) + B * torch.exp(-beta * n)
                - C * f.s2 * torch.exp(gamma * n))

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        # per run, the plain momentum law's starts; the size terms start small and neutral
        grid = torch.exp(torch.linspace(-3.5, 0.7, 24, dtype=y.dtype, device=y.device))
        alphas, c = grid_starts(
            lambda a: torch.stack([torch.ones_like(f.s1), f.s1 ** -a, -f.s2], -1), grid, f, y, n
        )
        floor = 1e-3 * y.amax(1, keepdim=True)
        L0 = torch.maximum(c[..., 0], floor)
        const = lambda v: torch.full_like(L0, v)  # noqa: E731
        return torch.stack([0.5 * L0, c[..., 1].clamp_min(1e-6), alphas, 0.5 * L0 * torch.exp(0.3 * f.log_n)[:, None],
                            const(0.3), c[..., 2].clamp_min(1e-6) * torch.exp(-0.0 * f.log_n)[:, None], const(0.0)], -1)
