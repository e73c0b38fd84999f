"""`fit_scaling`: one pure function from points to a fitted scaling law with bootstrap intervals.

The point fit and all bootstrap replicates are rows of one batched torch program. Parameters are
reported in the caller's units (A and B refer to N / units["N"] and D / units["D"]); derived
quantities (compute-optimal N and D, tokens per parameter) are in raw units.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from forecaster.csvio import jsonable
from forecaster.device import pick_device
from forecaster.errors import InputError
from forecaster.scaling import bootstrap as bs
from forecaster.scaling import laws
from forecaster.scaling.laws import OBJECTIVES, LossLaw, ScalingLaw
from forecaster.scaling.points import ScalingPoints


@dataclass
class ScalingFit:
    """A fitted cross-run law: point estimates, bootstrap intervals and what was derived from them."""

    law: str
    objective: str
    params: dict[str, float]
    intervals: dict[str, list[float]]
    stderr: dict[str, float]
    level: float
    n_points: int
    n_boot: int
    units: dict[str, float]
    objective_value: float
    rss: float
    derived: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    samples: np.ndarray | None = None  # (n_boot, n_params) bootstrap parameter rows

    @property
    def scaling_law(self) -> ScalingLaw:
        """The registered law this fit is of."""
        return laws.get(self.law)

    @property
    def theta(self) -> np.ndarray:
        """Point-estimate parameters in the law's order."""
        return np.array([self.params[k] for k in self.scaling_law.params])

    def _rows(self) -> np.ndarray:
        return self.samples if self.samples is not None and len(self.samples) else self.theta[None]

    def _band(self, values: np.ndarray, point: float) -> dict[str, float | None]:
        lo, hi, se = bs.summarize(values[:, None], self.level) if len(values) > 1 else ([math.nan],) * 3
        return {"value": float(point), "lo": _num(lo[0]), "hi": _num(hi[0]), "stderr": _num(se[0])}

    def predict(self, N: float | None = None, D: float | None = None, loss: float | None = None
                ) -> dict[str, float | None]:
        """Loss at (N, D) (error at `loss` for the downstream law), with the bootstrap interval."""
        law = self.scaling_law
        args = law.query(N, D, loss, self.units)
        return self._band(law.predict(self._rows(), *args), law.predict(self.theta, *args))

    def compute_optimal(self, C: float) -> dict[str, dict[str, float | None]]:
        """Compute-optimal N, D, tokens per parameter and loss for budget C = 6ND (raw FLOPs)."""
        law = self.scaling_law
        if not isinstance(law, LossLaw):
            raise InputError(f"the {self.law} law has no compute-optimal split")
        if not C > 0:
            raise InputError("the compute budget must be positive")
        return _optimal(law, self.theta[None], self._rows() if self.samples is not None else None,
                        C, self.units, self.level)

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        """JSON-ready dict; bootstrap samples included so `predict` can give intervals later."""
        out = asdict(self)
        out.pop("samples")
        if samples and self.samples is not None:
            out["samples"] = {k: self.samples[:, i].tolist() for i, k in enumerate(self.scaling_law.params)}
        return jsonable(out)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScalingFit":
        """Rebuild from `to_dict` output (e.g. a --json file)."""
        try:
            law = d["law"]
            if law not in laws.REGISTRY:
                raise KeyError(law)
            names = laws.get(law).params
            samples = None
            if d.get("samples"):
                samples = np.array([d["samples"][k] for k in names], dtype=np.float64).T
            return cls(
                law=law, objective=d["objective"],
                params={k: float(d["params"][k]) for k in names},
                intervals=d.get("intervals", {}), stderr=d.get("stderr", {}),
                level=float(d.get("level", 0.95)), n_points=int(d.get("n_points", 0)),
                n_boot=int(d.get("n_boot", 0)), units=d.get("units", {"N": 1.0, "D": 1.0}),
                objective_value=float(d.get("objective_value", math.nan)), rss=float(d.get("rss", math.nan)),
                derived=d.get("derived", {}), notes=d.get("notes", []), seconds=float(d.get("seconds", 0.0)),
                samples=samples,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a scaling fit: missing or bad field {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ScalingFit":
        """Read a fit saved with `forecast scaling fit --json`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"fit file not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})") from None


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _optimal(law: LossLaw, theta: np.ndarray, rows: np.ndarray | None, C: float, units: dict[str, float],
             level: float) -> dict[str, dict[str, float | None]]:
    uN, uD = units["N"], units["D"]
    split, loss = law.split, law.predict
    base = C / (uN * uD)

    def derive(t: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            n, d = split(t, base)
            return np.stack((n * uN, d * uD, d * uD / (n * uN), loss(t, n, d)), -1)

    point = derive(theta)[0]
    names = ("N_opt", "D_opt", "tokens_per_param", "loss")
    if rows is None or len(rows) < 2:
        return {k: {"value": _num(point[i]), "lo": None, "hi": None, "stderr": None} for i, k in enumerate(names)}
    lo, hi, se = bs.summarize(derive(rows), level)
    return {k: {"value": _num(point[i]), "lo": _num(lo[i]), "hi": _num(hi[i]), "stderr": _num(se[i])}
            for i, k in enumerate(names)}


def fit_scaling(
    points: ScalingPoints | Mapping[str, Any],
    law: str = "chinchilla",
    objective: str | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    device: str | torch.device | None = None,
    units: tuple[float, float] = (1.0, 1.0),
    budgets: Sequence[float] = (),
) -> ScalingFit:
    """Fit `law` to the points by `objective` with `n_boot` bootstrap refits in the same batch.

    `points` is a ScalingPoints or a mapping of arrays for `ScalingPoints.from_arrays` (N, loss and
    one of D, C, M; optional sigma, error). Per-point loss sigma weights the fit (inverse variance)
    and is redrawn in each bootstrap replicate, so forecast uncertainty of unfinished runs flows
    into the intervals.
    """
    if not isinstance(points, ScalingPoints):
        points = ScalingPoints.from_arrays(**points)
    if law not in laws.REGISTRY:
        raise InputError(f"unknown law {law!r}: choose from {', '.join(laws.available())}")
    sl = laws.get(law)
    objective = objective or sl.default_objective
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    sl.check_objective(objective)
    if n_boot < 0:
        raise InputError("the number of bootstrap replicates must be >= 0")
    if not 0.0 < level < 1.0:
        raise InputError("the interval level must be between 0 and 1")
    if units[0] <= 0 or units[1] <= 0:
        raise InputError("units for N and D must be positive")
    names = sl.params
    unit = {"N": float(units[0]), "D": float(units[1])}
    sl.validate(points)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    t0 = time.perf_counter()
    n = len(points)
    w = bs.replicate_weights(n, n_boot, seed, dev)
    theta, obj, notes = sl.fit(points, objective, w, n_boot, seed, dev, unit)
    theta_np = theta.cpu().numpy()
    resid = sl.observed(points) - sl.predict(theta_np[0], *sl.inputs(points, unit))
    seconds = time.perf_counter() - t0
    point = theta_np[0]
    samples = theta_np[1:] if n_boot > 0 else None
    intervals: dict[str, list[float]] = {}
    stderr: dict[str, float] = {}
    if samples is not None and n_boot >= 2:
        lo, hi, se = bs.summarize(samples, level)
        intervals = {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(names)}
        stderr = {k: float(se[i]) for i, k in enumerate(names)}
    notes += sl.notes(point)
    fit = ScalingFit(
        law=law, objective=objective, params={k: float(point[i]) for i, k in enumerate(names)},
        intervals=intervals, stderr=stderr, level=level, n_points=n, n_boot=n_boot,
        units=unit, objective_value=float(obj[0]),
        rss=float(np.sum(resid * resid)), notes=notes, seconds=seconds, samples=samples,
    )
    if isinstance(sl, LossLaw):
        fit.derived["exponents"] = _exponents(sl, point, samples, level)
        fit.derived["compute_optimal"] = [{"C": float(C), **fit.compute_optimal(C)} for C in budgets]
    return fit


def _exponents(law: LossLaw, point: np.ndarray, samples: np.ndarray | None, level: float) -> dict[str, Any]:
    """N_opt ~ C^a and D_opt ~ C^b, with their bootstrap intervals."""
    p = law.exponents(point)
    out: dict[str, Any] = {"a": {"value": float(p[0])}, "b": {"value": float(p[1])}}
    if samples is not None and len(samples) >= 2:
        lo, hi, se = bs.summarize(law.exponents(samples), level)
        for i, k in enumerate(("a", "b")):
            out[k].update(lo=float(lo[i]), hi=float(hi[i]), stderr=float(se[i]))
    return out
