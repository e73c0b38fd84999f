"""The scaling-law interface: a law's name, parameters, objectives, the points it needs, its fit and prediction.

Two kinds: a loss law predicts the loss of a run from its size N and tokens D and so has a
compute-optimal split (`LossLaw`); any other law maps its own inputs (the downstream law: a loss)
to what it predicts. Every law is fitted as one batched program whose row 0 is the point fit and
whose other rows are bootstrap replicates (forecaster.scaling.bootstrap).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from forecaster.errors import InputError
from forecaster.registry import Registry
from forecaster.scaling import bootstrap as bs
from forecaster.scaling.points import ScalingPoints, validate_sizes

OBJECTIVES = ("huber-log", "mse")
_FITTED_BY = {"huber-log": "Huber on log loss", "mse": "squared error"}  # for one-line errors


class ScalingLaw(abc.ABC):
    """A cross-run law: parameters fitted to one point per run, predicting `predicts` from its inputs."""

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]]
    formula: ClassVar[str]  # one line for the CLI help
    reference: ClassVar[str]
    default_objective: ClassVar[str]  # the objective its authors fit it by
    objectives: ClassVar[tuple[str, ...]] = OBJECTIVES
    needs: ClassVar[tuple[str, ...]]  # the ScalingPoints columns it is fitted to
    predicts: ClassVar[str]  # "loss" or "error"
    # parameters whose optimum at 0 (within 1e-7) is a bound the data do not move it off, and the
    # searched range of the others (an optimum at its edge is not identified either)
    zero_bound: ClassVar[tuple[str, ...]] = ()
    edges: ClassVar[dict[str, tuple[float, float]]] = {}

    @property
    def needs_size(self) -> bool:
        """Whether its points need model size N and tokens D."""
        return "N" in self.needs

    def check_objective(self, objective: str) -> None:
        """InputError when the law is not fitted by `objective` (one of OBJECTIVES)."""
        if objective not in self.objectives:
            first = self.objectives[0]
            raise InputError(f"the {self.name} law is fitted by {_FITTED_BY[first]}: use --objective {first}")

    @abc.abstractmethod
    def validate(self, points: ScalingPoints) -> None:
        """Reject points the law cannot be identified from, with one line saying why (InputError)."""

    @abc.abstractmethod
    def fit(self, points: ScalingPoints, objective: str, w: torch.Tensor, n_boot: int, seed: int,
            device: torch.device, units: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Batched fit with bootstrap weights w (1 + n_boot, n): ((B, p) parameters, (B,) objective, notes).

        Parameters refer to N / units["N"] and D / units["D"] where the law reads them.
        """

    @abc.abstractmethod
    def inputs(self, points: ScalingPoints, units: dict[str, float]) -> tuple[np.ndarray, ...]:
        """The arguments of `predict` at every point, in the units the parameters use."""

    def observed(self, points: ScalingPoints) -> np.ndarray:
        """What the law predicts, as observed at every point."""
        return getattr(points, self.predicts)

    @abc.abstractmethod
    def query(self, N: float | None, D: float | None, loss: float | None, units: dict[str, float]
              ) -> tuple[float, ...]:
        """The arguments of `predict` for one query; InputError when the query lacks them."""

    @abc.abstractmethod
    def predict(self, theta: np.ndarray, *inputs: np.ndarray | float) -> np.ndarray:
        """Prediction for parameter rows theta[..., p] at `inputs` (broadcasts)."""

    def notes(self, point: np.ndarray) -> list[str]:
        """Say when the optimum sits on a constraint: that parameter is not identified by the data."""
        out = []
        for i, k in enumerate(self.params):
            if k in self.zero_bound and point[i] <= 1e-7:
                out.append(f"{k} is at its bound 0: the data do not identify it")
            if k in self.edges and (point[i] <= self.edges[k][0] or point[i] >= self.edges[k][1]):
                out.append(f"{k} is at the edge of the searched range: the data do not identify it")
        return out


@dataclass
class FitData:
    """One batch of fitting problems on shared (N, D): targets and weights per replicate."""

    lN: torch.Tensor  # (n,) log(N / N0)
    lD: torch.Tensor  # (n,) log(D / D0)
    y: torch.Tensor  # (B, n) loss per replicate
    w: torch.Tensor  # (B, n) weight per replicate (bootstrap counts x sigma weights)
    N0: float
    D0: float


def make_data(N: np.ndarray, D: np.ndarray, y: torch.Tensor, w: torch.Tensor) -> FitData:
    """Centre log N and log D (geometric means) so that the fitted coefficients are O(loss)."""
    logN = np.log(N)
    logD = np.log(D)
    N0, D0 = float(np.exp(logN.mean())), float(np.exp(logD.mean()))
    dev, dt = y.device, y.dtype
    return FitData(torch.as_tensor(logN - logN.mean(), device=dev, dtype=dt),
                   torch.as_tensor(logD - logD.mean(), device=dev, dtype=dt), y, w, N0, D0)


class LossLaw(ScalingLaw):
    """A law of the loss in model size N and tokens D, with a compute-optimal split of a budget C = 6ND."""

    needs = ("N", "D", "loss")
    predicts = "loss"

    @abc.abstractmethod
    def fit_data(self, data: FitData, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched fit on centred data: ((B, p) parameters in caller units, (B,) objective value)."""

    @abc.abstractmethod
    def split(self, theta: np.ndarray, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N, D) for budget C = 6ND, in the units the parameters use."""

    @abc.abstractmethod
    def chinchilla_form(self, theta: np.ndarray) -> np.ndarray:
        """The same law as Chinchilla rows (E, A, B, alpha, beta): its compute-optimal exponents."""

    def validate(self, points: ScalingPoints) -> None:
        validate_sizes(points, self.name, len(self.params))

    def fit(self, points: ScalingPoints, objective: str, w: torch.Tensor, n_boot: int, seed: int,
            device: torch.device, units: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        sw = bs.sigma_weights(points.sigma, points.loss if objective == "huber-log" else None)
        if sw is not None:
            w = w * torch.as_tensor(sw, device=device)
        y = bs.jitter(points.loss, points.sigma, n_boot, seed, device)
        theta, obj = self.fit_data(make_data(points.N / units["N"], points.D / units["D"], y, w), objective)
        return theta, obj, []

    def inputs(self, points: ScalingPoints, units: dict[str, float]) -> tuple[np.ndarray, ...]:
        return points.N / units["N"], points.D / units["D"]

    def query(self, N: float | None, D: float | None, loss: float | None, units: dict[str, float]
              ) -> tuple[float, ...]:
        if N is None or D is None or N <= 0 or D <= 0:
            raise InputError("predict needs positive N and D")
        return N / units["N"], D / units["D"]

    def exponents(self, theta: np.ndarray) -> np.ndarray:
        """N_opt ~ C^a and D_opt ~ C^b: rows (a, b) with a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
        t = self.chinchilla_form(theta)
        s = t[..., 3] + t[..., 4]
        return np.stack((t[..., 4] / s, t[..., 3] / s), -1)


REGISTRY: Registry[ScalingLaw] = Registry("scaling law", ScalingLaw, "forecaster.scaling.laws",
                                          "forecaster.scaling_laws")
register = REGISTRY.register
get = REGISTRY.get


def available(predicts: str | None = None) -> list[str]:
    """Names of the registered laws (those predicting `predicts` only, when given): loss laws first."""
    return REGISTRY.names(lambda law: predicts is None or law.predicts == predicts,
                          key=lambda law: (law.predicts != "loss", law.name))
