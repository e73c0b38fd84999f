"""Gadre et al.'s over-training law L(C, M) = E + (a M^eta + b M^-eta) C^-eta (docs/laws.md §2.2).

With C = 6ND and M = D/N it is the Chinchilla form with one shared exponent:
E + a 6^-eta N^-2eta + b 6^-eta D^-2eta. So it is fitted by the same variable projection with a
one-dimensional exponent grid (exact for squared error on raw loss, the authors' objective), or by
the Huber-on-log recipe with tied exponents.
"""

from __future__ import annotations

import numpy as np
import torch

from forecaster.scaling.laws import chinchilla as ch
from forecaster.scaling.laws.base import FitData, LossLaw, register

PARAMS = ("E", "a", "b", "eta")


def from_chinchilla(theta: torch.Tensor) -> torch.Tensor:
    """Tied Chinchilla (E, A, B, alpha, alpha) -> (E, a, b, eta) with eta = alpha/2, a = A 6^eta."""
    eta = theta[:, 3] / 2.0
    six = torch.pow(torch.full_like(eta, 6.0), eta)
    return torch.stack((theta[:, 0], theta[:, 1] * six, theta[:, 2] * six, eta), -1)


def to_chinchilla(theta: np.ndarray) -> np.ndarray:
    """(E, a, b, eta) -> Chinchilla (E, A, B, alpha, beta) rows."""
    E, a, b, eta = (theta[..., i] for i in range(4))
    six = np.power(6.0, -eta)
    return np.stack((E, a * six, b * six, 2 * eta, 2 * eta), -1)


def fit(data: FitData, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched fit: ((B, 4) parameters (E, a, b, eta), (B,) objective value)."""
    if objective == "mse":
        theta, val = ch.varpro_mse(data, tied=True)
    else:
        theta, val = ch.fit_huber_log(data, tied=True)
    return from_chinchilla(theta), val


def predict(theta: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Loss at (N, D) for rows theta[..., (E, a, b, eta)]: E + (a M^eta + b M^-eta) C^-eta."""
    E, a, b, eta = (theta[..., i] for i in range(4))
    C = 6.0 * N * D
    M = D / N
    return E + (a * np.power(M, eta) + b * np.power(M, -eta)) * np.power(C, -eta)


def compute_optimal(theta: np.ndarray, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal (N, D) for budget C: the Chinchilla split with alpha = beta = 2 eta."""
    return ch.compute_optimal(to_chinchilla(theta), C)


@register
class Overtrain(LossLaw):
    """Gadre et al.'s law of over-trained runs: the Chinchilla form with one shared exponent."""

    name = "overtrain"
    params = PARAMS
    formula = "L = E + (a M^eta + b M^-eta) C^-eta"
    reference = "Gadre et al. 2024; M = D/N, C = 6ND"
    default_objective = "mse"
    zero_bound = ("E", "a", "b")
    edges = {"eta": (1e-4, ch.EXP_HI - 1e-6)}

    def fit_data(self, data: FitData, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
        return fit(data, objective)

    def predict(self, theta: np.ndarray, *inputs: np.ndarray | float) -> np.ndarray:
        return predict(theta, *inputs)

    def split(self, theta: np.ndarray, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return compute_optimal(theta, C)

    def chinchilla_form(self, theta: np.ndarray) -> np.ndarray:
        return to_chinchilla(theta)
