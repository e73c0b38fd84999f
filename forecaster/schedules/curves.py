"""The shapes a schedule's warmup and decay follow, and where a fractional cooldown falls."""

from __future__ import annotations

import math

import numpy as np


def warmup_curve(x: np.ndarray, shape: str) -> np.ndarray:
    """Warmup fraction of the way from start to peak at warmup progress x in [0, 1]."""
    if shape == "cosine":
        return 0.5 * (1.0 - np.cos(np.pi * x))
    if shape == "sqrt":  # HF '1-sqrt' warmup
        return 1.0 - np.sqrt(np.clip(1.0 - x, 0.0, 1.0))
    return x


def decay_curve(v0: np.ndarray | float, v1: float, q: np.ndarray, shape: str) -> np.ndarray:
    """LR going from v0 (q = 0) to v1 (q = 1) along a decay shape."""
    if shape == "exp":  # Luo et al.: v0^(1-q) * v1^q, geometric interpolation
        return np.exp((1.0 - q) * np.log(v0) + q * math.log(v1))
    if shape == "sqrt":
        f = 1.0 - np.sqrt(q)
    elif shape == "cosine":
        f = 0.5 * (1.0 + np.cos(np.pi * q))
    else:
        f = 1.0 - q
    return v1 + (v0 - v1) * f



def decay_window(decay: float, end: int | None) -> tuple[float, int]:
    """(first step D, length N) of a cooldown spanning the last `decay` fraction of `end` steps."""
    if end is None:
        return math.inf, 0
    n = int(math.floor(decay * end + 0.5))
    return float(end - n), n
