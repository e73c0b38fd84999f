"""Momentum law with model size (Tissue et al. 2024): one law for the whole curves of many sizes."""

from __future__ import annotations

import torch

from forecaster.batch import Features
from forecaster.laws.base import Law, register
from forecaster.laws.momentum import momentum_starts
from forecaster.stats import EPS


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
        return torch.cat([torch.log(theta[..., :6].clamp_min(EPS)), theta[..., 6:]], -1)

    def predict(self, theta: torch.Tensor, f: Features) -> torch.Tensor:
        L0, A, alpha, B, beta, C, gamma = (v[:, None] for v in theta.unbind(-1))
        n = f.log_n[:, None]
        return (L0 + A * torch.exp(-alpha * f.log_s1) + B * torch.exp(-beta * n)
                - C * f.s2 * torch.exp(gamma * n))

    def starts(self, f: Features, y: torch.Tensor, n: int = 3) -> torch.Tensor:
        # per run, the plain momentum law's starts; the size term takes half the floor, gamma 0
        L0, A, alpha, C = momentum_starts(f, y, n)
        B = 0.5 * L0 * torch.exp(0.3 * f.log_n)[:, None]  # B * N^-0.3 = L0 / 2
        return torch.stack([0.5 * L0, A, alpha, B, torch.full_like(L0, 0.3), C, torch.zeros_like(L0)], -1)
