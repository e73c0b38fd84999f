"""The points a scaling law is fitted to: one row per finished (or forecast) run, checked on entry."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from forecaster.errors import InputError

# Column names accepted in a CSV, first match wins (case-insensitive).
ALIASES: dict[str, tuple[str, ...]] = {
    "N": ("N", "params", "n_params", "parameters", "model_size"),
    "D": ("D", "tokens", "n_tokens", "data"),
    "C": ("C", "flops", "compute", "training_flop", "training_flops"),
    "M": ("M", "tokens_per_param", "tokens_per_parameter", "tok_mult"),
    "loss": ("loss", "final_loss", "val_loss"),
    "sigma": ("sigma", "loss_sigma", "loss_std", "loss_se"),
    "error": ("error", "err", "downstream_error", "err_avg"),
}


@dataclass
class ScalingPoints:
    """Runs as arrays: parameters N, tokens D, final loss, optional loss sigma and downstream error.

    ``sigma`` is the standard deviation of each loss (e.g. from a forecast interval), used both to
    weight the fit and to jitter the loss in bootstrap replicates. ``error`` is a downstream average
    error for the loss-to-error law.
    """

    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray | None = None
    error: np.ndarray | None = None
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.N = np.asarray(self.N, dtype=np.float64).reshape(-1)
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        self.loss = np.asarray(self.loss, dtype=np.float64).reshape(-1)
        if self.sigma is not None:
            self.sigma = np.asarray(self.sigma, dtype=np.float64).reshape(-1)
        if self.error is not None:
            self.error = np.asarray(self.error, dtype=np.float64).reshape(-1)
        n = len(self.loss)
        for name in ("N", "D", "sigma", "error"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise InputError(f"column {name} has {len(arr)} values but loss has {n}")

    @classmethod
    def from_arrays(
        cls,
        N: Sequence[float] | np.ndarray,
        loss: Sequence[float] | np.ndarray,
        D: Sequence[float] | np.ndarray | None = None,
        C: Sequence[float] | np.ndarray | None = None,
        M: Sequence[float] | np.ndarray | None = None,
        sigma: Sequence[float] | np.ndarray | None = None,
        error: Sequence[float] | np.ndarray | None = None,
        names: list[str] | None = None,
    ) -> "ScalingPoints":
        """Build from N plus one of D, C (= 6ND) or M (= D/N); the compute convention is C = 6ND."""
        N = np.asarray(N, dtype=np.float64)
        if D is not None:
            D = np.asarray(D, dtype=np.float64)
        elif C is not None:
            D = np.asarray(C, dtype=np.float64) / (6.0 * N)
        elif M is not None:
            D = np.asarray(M, dtype=np.float64) * N
        else:
            raise InputError("need tokens D, compute C or tokens-per-parameter M for every point")
        return cls(N=N, D=D, loss=loss, sigma=sigma, error=error, names=list(names or []))

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def C(self) -> np.ndarray:
        """Training compute under the 6ND convention."""
        return 6.0 * self.N * self.D

    @property
    def M(self) -> np.ndarray:
        """Tokens per parameter."""
        return self.D / self.N

    def subset(self, mask: np.ndarray) -> "ScalingPoints":
        """The points where mask is true (bool mask or index array)."""
        idx = np.arange(len(self))[mask]
        return ScalingPoints(
            N=self.N[idx], D=self.D[idx], loss=self.loss[idx],
            sigma=None if self.sigma is None else self.sigma[idx],
            error=None if self.error is None else self.error[idx],
            names=[self.names[i] for i in idx] if self.names else [],
        )


def _finite_positive(name: str, arr: np.ndarray, allow_zero: bool = False) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(f"{name} has {int(bad.sum())} missing or non-finite value(s) (first at row {int(np.argmax(bad)) + 1})")
    nonpos = arr < 0 if allow_zero else arr <= 0
    if nonpos.any():
        i = int(np.argmax(nonpos))
        raise InputError(f"{name} must be {'non-negative' if allow_zero else 'positive'}: row {i + 1} has {arr[i]!r}")


def validate_errors(points: ScalingPoints, law: str, n_params: int) -> None:
    """Reject points a loss-to-error law cannot be identified from, with one line saying why (InputError)."""
    n = len(points)
    if points.error is None:
        raise InputError(f"the {law} law needs an error column (downstream average error)")
    _finite_positive("loss", points.loss)
    err = points.error
    if not np.isfinite(err).all():
        raise InputError("error has missing or non-finite values")
    if n < n_params:
        raise InputError(f"law {law} has {n_params} parameters but only {n} point(s) were given")
    if np.unique(points.loss).size < 2:
        raise InputError(f"all points have the same loss: the {law} law cannot be fitted")


def validate_sizes(points: ScalingPoints, law: str, n_params: int) -> None:
    """Reject points a law of loss in N and D cannot be identified from, with one line saying why (InputError)."""
    n = len(points)
    _finite_positive("N", points.N)
    _finite_positive("D", points.D)
    _finite_positive("loss", points.loss)
    if points.sigma is not None:
        _finite_positive("sigma", points.sigma, allow_zero=True)
    if n < n_params:
        raise InputError(f"law {law} has {n_params} parameters but only {n} point(s) were given")
    if np.unique(points.N).size < 2:
        raise InputError("all points are at one model size N: the size exponent cannot be identified")
    if np.unique(points.D).size < 2:
        raise InputError("all points have the same token count D: the data exponent cannot be identified")


def _pick(header: list[str], wanted: str | None, key: str) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    if wanted is not None:
        if wanted.lower() not in lower:
            raise InputError(f"column {wanted!r} not found (columns: {', '.join(header)})")
        return lower[wanted.lower()]
    for alias in ALIASES[key]:
        if alias.lower() in lower:
            return lower[alias.lower()]
    return None


def _floats(rows: list[dict[str, str]], col: str) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        text = (row.get(col) or "").strip()
        try:
            out[i] = float(text) if text else math.nan
        except ValueError:
            raise InputError(f"column {col!r} row {i + 1}: {text!r} is not a number") from None
    return out


def read_csv(
    path: str | Path,
    n_col: str | None = None,
    d_col: str | None = None,
    c_col: str | None = None,
    m_col: str | None = None,
    loss_col: str | None = None,
    sigma_col: str | None = None,
    error_col: str | None = None,
    need_size: bool = True,
) -> ScalingPoints:
    """Read N, D (or C = 6ND, or M = D/N), loss and optional sigma/error columns from a CSV file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not header:
        raise InputError(f"{path} is empty or has no header row")
    if not rows:
        raise InputError(f"{path} has a header but no data rows")
    cols = {
        "N": _pick(header, n_col, "N"), "D": _pick(header, d_col, "D"), "C": _pick(header, c_col, "C"),
        "M": _pick(header, m_col, "M"), "loss": _pick(header, loss_col, "loss"),
        "sigma": _pick(header, sigma_col, "sigma"), "error": _pick(header, error_col, "error"),
    }
    if cols["loss"] is None:
        raise InputError(f"{path} has no loss column (columns: {', '.join(header)})")
    loss = _floats(rows, cols["loss"])
    sigma = _floats(rows, cols["sigma"]) if cols["sigma"] else None
    error = _floats(rows, cols["error"]) if cols["error"] else None
    if not need_size and cols["N"] is None:
        ones = np.ones(len(rows))
        return ScalingPoints(N=ones, D=ones, loss=loss, sigma=sigma, error=error)
    if cols["N"] is None:
        raise InputError(f"{path} has no N (parameters) column (columns: {', '.join(header)})")
    N = _floats(rows, cols["N"])
    if cols["D"] is not None:
        D = _floats(rows, cols["D"])
    elif cols["C"] is not None:
        D = _floats(rows, cols["C"]) / (6.0 * N)
    elif cols["M"] is not None:
        D = _floats(rows, cols["M"]) * N
    else:
        raise InputError(f"{path} needs a D (tokens), C (compute = 6ND) or M (tokens per parameter) column")
    return ScalingPoints(N=N, D=D, loss=loss, sigma=sigma, error=error)
