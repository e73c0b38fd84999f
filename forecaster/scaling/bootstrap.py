"""Bootstrap replicates as weights, so every replicate is one row of the same batched fit.

Resampling n points with replacement is the same as weighting each point by how often it was
drawn (multinomial counts); losses with a known sigma (e.g. forecast intervals) are also redrawn
within it. Row 0 is always the original data, so the point fit rides in the same program.
"""

from __future__ import annotations

import numpy as np
import torch


def replicate_weights(n: int, n_boot: int, seed: int, device: torch.device) -> torch.Tensor:
    """(1 + n_boot, n) weights: row 0 all ones, then multinomial resampling counts."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    counts = torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(n_boot, n, dtype=torch.float64))
    return torch.cat([torch.ones(1, n, dtype=torch.float64), counts]).to(device)


def jitter(y: np.ndarray, sigma: np.ndarray | None, n_boot: int, seed: int, device: torch.device) -> torch.Tensor:
    """(1 + n_boot, n) targets: row 0 as given, other rows redrawn as y + sigma z (kept positive)."""
    base = torch.as_tensor(y, dtype=torch.float64)
    out = base[None].repeat(1 + n_boot, 1)
    if sigma is not None and n_boot > 0:
        gen = torch.Generator().manual_seed(seed + 1)
        z = torch.randn(n_boot, len(y), generator=gen, dtype=torch.float64)
        s = torch.as_tensor(sigma, dtype=torch.float64)
        out[1:] = (base + s * z).clamp_min(1e-3 * float(base.min()))
    return out.to(device)


def sigma_weights(sigma: np.ndarray | None, scale: np.ndarray | None = None) -> np.ndarray | None:
    """Inverse-variance weights normalised to mean 1; sigma relative to `scale` when given.

    Sigmas are floored at a tenth of their median so one near-exact point cannot take over the fit.
    """
    if sigma is None:
        return None
    s = np.asarray(sigma, dtype=np.float64)
    if scale is not None:
        s = s / scale
    pos = s[s > 0]
    if pos.size == 0:
        return None
    s = np.maximum(s, 0.1 * float(np.median(pos)))
    w = 1.0 / (s * s)
    return w / w.mean()


def summarize(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval (lo, hi) at `level` and standard error, per column of samples (B, k)."""
    q = (1.0 - level) / 2.0
    finite = np.where(np.isfinite(samples), samples, np.nan)
    lo = np.nanquantile(finite, q, axis=0)
    hi = np.nanquantile(finite, 1.0 - q, axis=0)
    se = np.nanstd(finite, axis=0, ddof=1)
    return lo, hi, se
