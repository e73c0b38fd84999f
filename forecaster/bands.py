"""Predictive bands: parameter uncertainty (Laplace, inflated by backtest calibration) plus noise.

Parameters are drawn from the fit's Gaussian approximation in unconstrained space, so a quantity
the data cannot pin down (an annealing response no sibling has shown) keeps its wide prior and the
band widens where the schedule makes it matter. Observation noise is added in log space from the
run's own point-to-point scatter. Quantiles come from the samples; the median is the point fit.
"""

from __future__ import annotations

import numpy as np
import torch

from forecaster.batch import build_features, lr_per_step
from forecaster.device import DTYPE
from forecaster.fit import GroupFit, predict_groups
from forecaster.histories import RunForecast, RunHistory

# Scale on the Laplace covariance, set by backtests on held-out curves (docs/benchmarks.md):
# Laplace bands of a misspecified law are too narrow when extrapolating far.
INFLATION = 3.0
CHUNK = 2_000_000
# When no run of a group has decayed its LR, the annealing gain is drawn uniformly between none and
# this share of the loss at the run's end (LLM cooldowns typically gain 2-8 %): an honest, wide band.
MAX_GAIN = 0.10
EVIDENCE_MIN = 0.05  # sample x point x row elements per batched evaluation


def noise_scale(values: np.ndarray) -> float:
    """Robust point-to-point scatter of a curve in log space."""
    if len(values) < 3:
        return 0.0
    d = np.diff(np.log(values))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def forecast_fit(fc, fit: GroupFit, rows: list[int], targets: list[int]) -> dict[int, RunForecast]:
    """Forecasts for the fitted `rows` listed in `targets` (indices into fc.histories_)."""
    hist = [fc.histories_[r] for r in rows]
    horizons = [h.horizon if h.horizon is not None else np.zeros(0, dtype=np.int64) for h in hist]
    feats = build_features(hist, [np.asarray(x) for x in horizons], warmup=fc.warmup, device=fc.device_)
    G, M = fit.members.shape
    point = predict_groups(fit, feats)  # (G, M, P)
    gen = torch.Generator(device="cpu").manual_seed(fc.seed)
    n = fc.samples
    P = point.shape[-1]
    q = fit.x.shape[-1]
    chol = torch.linalg.cholesky(fit.cov * INFLATION**2 + 1e-12 * torch.eye(q, dtype=DTYPE, device=fit.x.device))
    per = max(1, CHUNK // max(1, G * M * P))
    draws = []
    for start in range(0, n, per):
        k = min(per, n - start)
        z = torch.randn(k, G, q, generator=gen, dtype=DTYPE).to(fit.x.device)
        xs = fit.x + (chol @ z.unsqueeze(-1)).squeeze(-1)
        draws.append(predict_groups(fit, feats, xs))
    samples = torch.log(torch.cat(draws).clamp_min(1e-12))  # (n, G, M, P)
    nh = torch.as_tensor([len(x) for x in horizons], device=fit.x.device)[fit.members.clamp_min(0)]  # (G, M)
    unknown = _unidentified_gain(fit, feats, samples, nh, gen)
    if unknown is not None:
        samples, which = unknown
        point = torch.where(which[:, None, None], samples.median(0).values.exp(), point)
    noise = torch.as_tensor([noise_scale(h.values) for h in hist], dtype=DTYPE, device=fit.x.device)
    member_noise = noise[fit.members.clamp_min(0)]  # (G, M)
    eps = torch.randn(samples.shape, generator=gen, dtype=DTYPE).to(fit.x.device)
    samples = samples + eps * member_noise[None, :, :, None]
    qs = torch.quantile(samples, torch.as_tensor([fc.quantiles[0], fc.quantiles[2]], dtype=DTYPE,
                                                 device=fit.x.device), dim=0).exp()
    point_np, lo_np, hi_np = point.cpu().numpy(), qs[0].cpu().numpy(), qs[1].cpu().numpy()
    finals = samples[..., :].cpu().numpy()
    theta = fit.theta().cpu().numpy()
    members = fit.members.cpu().numpy()
    out = {}
    for r in targets:
        k = rows.index(r)
        gi, mi = map(int, np.argwhere(members == k)[0])
        h = fc.histories_[r]
        hz = horizons[k]
        nh = len(hz)
        p50 = point_np[gi, mi, :nh]
        lr = lr_per_step(h, int(hz.max()) if nh else h.last_step, fc.warmup)
        lr_h = lr[hz] if (lr is not None and nh) else np.full(nh, np.nan)
        params = {name: float(v) for name, v in zip(fit.law.params, theta[gi, mi])}
        final_samples = np.exp(finals[:, gi, mi, nh - 1]) if nh else None
        notes = []
        if unknown is not None and bool(unknown[1][gi]):
            notes.append(f"annealing response not identifiable: no run in the group has decayed its LR yet; "
                         f"the band spans 0-{MAX_GAIN:.0%} gain from the planned decay")
        out[r] = RunForecast(
            run=h.run, group=h.group, steps=np.asarray(hz), lr=lr_h, p50=p50,
            p10=np.minimum(lo_np[gi, mi, :nh], p50), p90=np.maximum(hi_np[gi, mi, :nh], p50),
            law=fit.law.name, params=params, metric=h.metric, final_samples=final_samples, notes=notes,
        )
    return out


def _unidentified_gain(fit: GroupFit, feats, samples: torch.Tensor, nh: torch.Tensor, gen):
    """Redraw the annealing gain of groups whose data cannot identify it; None when none such."""
    law = fit.law
    if law.amplitude is None:
        return None
    which = fit.evidence < EVIDENCE_MIN
    if not bool(which.any()):
        return None
    p = len(law.params)
    theta = law.natural(fit.x[:, :p]).clone()
    for name, v in law.shape_prior.items():
        theta[:, law.params.index(name)] = v
    amp = law.params.index(law.amplitude)
    theta[:, amp] = 1e-30
    x_off = fit.x.clone()
    x_off[:, :p] = law.unconstrained(theta)
    theta[:, amp] = 1.0
    x_one = fit.x.clone()
    x_one[:, :p] = law.unconstrained(theta)
    shape = predict_groups(fit, feats, x_off) - predict_groups(fit, feats, x_one)  # (G, M, P), gain per unit
    last = (nh - 1).clamp_min(0)
    at_end = torch.gather(shape, 2, last[..., None]).clamp_min(1e-30)
    level = torch.gather(samples.exp().median(0).values, 2, last[..., None])
    rel = (shape / at_end).clamp_min(0) * level  # gain in loss units per unit share
    phi = torch.rand(samples.shape[0], 1, 1, 1, generator=gen, dtype=DTYPE).to(samples.device) * MAX_GAIN
    redrawn = torch.log((samples.exp() - phi * rel).clamp_min(1e-12))
    return torch.where(which[None, :, None, None], redrawn, samples), which
