"""Constants and small statistics shared by the fit, the bands, the alerts and early stopping."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays out of the imports a sync starts with (join, alerts)
    import torch

# the standard normal's 90 % quantile: a p10-p90 band is +-Z90 standard deviations
Z90 = 1.2815515655446004
# floor for quantities of order one before a log or an inverse (losses, LRs, ridge terms)
EPS = 1e-12
# floor that only keeps a division or a log away from exactly zero
TINY = 1e-300
# the least log-scale a band may imply: a zero-width band is still a distribution
MIN_LOG_SD = 1e-6


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber loss: 0.5 r^2 within delta, delta (|r| - delta / 2) outside."""
    # min(|r|, delta) * (|r| - min(|r|, delta) / 2): the same values to the bit as the two-branch
    # form, in four passes over the residuals instead of seven
    a = r.abs()
    c = a.clamp_max(delta)
    return c * (a - 0.5 * c)


def band_log_sd(lo: float, hi: float) -> float:
    """Standard deviation of the log of a quantity whose p10-p90 interval is (lo, hi)."""
    return max((math.log(max(hi, TINY)) - math.log(max(lo, TINY))) / (2 * Z90), MIN_LOG_SD)
