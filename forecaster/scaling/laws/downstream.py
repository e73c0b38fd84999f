"""Loss-to-downstream-error law of Gadre et al.: error = eps - k exp(-gamma L) (docs/laws.md §2.2).

Linear in (eps, k) for fixed gamma, so it is fitted by variable projection over a 1-D gamma grid,
squared error on the raw error (the authors' objective); k >= 0 so that error falls with loss.
"""

from __future__ import annotations

import numpy as np
import torch

from forecaster.errors import InputError
from forecaster.scaling import bootstrap as bs
from forecaster.scaling.laws.base import ScalingLaw, register
from forecaster.scaling.points import ScalingPoints, validate_errors
from forecaster.scaling.varpro import varpro

PARAMS = ("eps", "k", "gamma")
GAMMA_LO, GAMMA_HI, GAMMA_STEP = 0.0, 10.0, 0.01


def fit(loss: np.ndarray, err: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched fit on err, w (B, n): ((B, 3) parameters (eps, k, gamma), (B,) weighted RSS)."""
    dev, dt = err.device, err.dtype
    L0 = float(loss.mean())
    lc = torch.as_tensor(loss - L0, device=dev, dtype=dt)  # centred so exp() stays O(1)

    def phi(nl: torch.Tensor) -> torch.Tensor:
        f = -torch.exp(-nl[..., 0:1] * lc)
        return torch.stack((torch.ones_like(f), f), -1)

    axis = torch.arange(GAMMA_LO + GAMMA_STEP, GAMMA_HI + 1e-9, GAMMA_STEP)
    res = varpro(phi, [axis], err, w, nonneg=(False, True), lo=[1e-6], hi=[4 * GAMMA_HI])
    gamma = res.nl[:, 0]
    k = res.coef[:, 1] * torch.exp(gamma * L0)
    return torch.stack((res.coef[:, 0], k, gamma), -1), res.rss


def predict(theta: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Downstream error at loss for rows theta[..., (eps, k, gamma)]."""
    eps, k, gamma = (theta[..., i] for i in range(3))
    return eps - k * np.exp(-gamma * loss)


@register
class Downstream(ScalingLaw):
    """Gadre et al.'s map from a run's loss to its downstream average error."""

    name = "downstream"
    params = PARAMS
    formula = "error = eps - k exp(-gamma L)"
    reference = "Gadre et al. 2024"
    default_objective = "mse"
    objectives = ("mse",)
    needs = ("loss", "error")
    predicts = "error"
    zero_bound = ("k",)
    edges = {"gamma": (2e-6, 4 * GAMMA_HI - 1e-6)}

    def validate(self, points: ScalingPoints) -> None:
        validate_errors(points, self.name, len(self.params))

    def fit(self, points: ScalingPoints, objective: str, w: torch.Tensor, n_boot: int, seed: int,
            device: torch.device, units: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        notes = []
        if points.sigma is not None:
            notes.append(f"sigma ignored: the {self.name} law takes loss as its input")
        err = bs.jitter(points.error, None, n_boot, seed, device)
        theta, obj = fit(points.loss, err, w)
        return theta, obj, notes

    def inputs(self, points: ScalingPoints, units: dict[str, float]) -> tuple[np.ndarray, ...]:
        return (points.loss,)

    def query(self, N: float | None, D: float | None, loss: float | None, units: dict[str, float]
              ) -> tuple[float, ...]:
        if loss is None:
            raise InputError(f"the {self.name} law predicts error from a loss: give --loss")
        return (loss,)

    def predict(self, theta: np.ndarray, *inputs: np.ndarray | float) -> np.ndarray:
        return predict(theta, *inputs)
