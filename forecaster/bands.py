"""Predictive bands: parameter uncertainty (Laplace, inflated by backtest calibration) plus noise.

Parameters are drawn from the fit's Gaussian approximation in unconstrained space, so a quantity
the data cannot pin down (an annealing response no sibling has shown) keeps its wide prior and the
band widens where the schedule makes it matter. Observation noise is added in log space from the
run's own point-to-point scatter. Quantiles come from the samples; the median is the point fit.
Where siblings share a run's step-to-step deviations (the same data order, `shared_noise`),
every quantile follows them and the band keeps only what they leave unexplained.
The three scales below are `Forecaster` settings (``inflation``, ``extrapolation``, ``misfit``);
the constants are their defaults.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from forecaster import keyed_random
from forecaster.batch import Features, build_features
from forecaster.device import DTYPE
from forecaster.fit import GroupFit
from forecaster.histories import BAND_LEVELS, UNIDENTIFIED_NOTE, RunForecast, RunHistory, level_key
from forecaster.phases import phase
from forecaster.shared_noise import shared_noise
from forecaster.stats import EPS, TINY, Z90

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster

# Scale on the Laplace covariance. A misspecified law's Laplace band is too narrow when it
# extrapolates, but the misfit and extrapolation terms below carry that (backtests in
# docs/benchmarks.md barely move with this scale), so it stays 1.
INFLATION = 1.0
# log-space error per unit log(LR area past the data), from the same backtests
EXTRAPOLATION = 0.002
# the fit's robust (MAD) residual scale understates a law's systematic misfit by about this factor
MISFIT = 2.5
CHUNK = 2_000_000  # sample x point x row elements per batched evaluation
KNOTS = 48  # horizon points per run at which the parameter draws are evaluated
# When no run of a group has decayed its LR far enough, the annealing gain is drawn uniformly between
# none and this share of the loss at the run's end (LLM cooldowns typically gain 2-8 %): an honest,
# wide band. "Far enough": a decay of at least EVIDENCE_MIN of the peak LR, and at least
# EVIDENCE_SHARE of the decay the forecast extrapolates to. The first few percent of a decay are
# within the noise of the amplitude they would have to set (a fit from them can put the forecast
# anywhere, below zero included), and a law fitted on a quarter of a decay extrapolates the rest.
MAX_GAIN = 0.10
EVIDENCE_MIN = 0.05
EVIDENCE_SHARE = 0.25


def noise_scale(values: np.ndarray) -> float:
    """Robust point-to-point scatter of a curve in log space."""
    if len(values) < 3:
        return 0.0
    d = np.diff(np.log(values))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _padded(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged 1-D arrays as rows of one (R, N) array, NaN-padded, and their lengths."""
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    out = np.full((len(arrays), max(int(lengths.max()) if len(arrays) else 0, 1)), np.nan)
    if len(arrays) and lengths.sum():
        out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = np.concatenate(arrays)
    return out, lengths


def row_medians(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The median of each row's `valid` entries, exactly as np.median computes it (the mean of the
    two middle values of an even count; NaN for none), for all rows in one sort."""
    s = np.sort(np.where(valid, x, np.inf), axis=1)
    c = valid.sum(1)
    rows = np.arange(len(x))
    lo, hi = s[rows, np.maximum(c - 1, 0) // 2], s[rows, c // 2 - (c == 0)]
    return np.where(c > 0, (lo + hi) / 2.0, np.nan)


def noise_scales(values: list[np.ndarray]) -> np.ndarray:
    """`noise_scale` of every curve at once (the per-curve calls were a visible share of a
    1,000-run call)."""
    if not values:
        return np.zeros(0)
    logs, n = _padded([np.log(np.asarray(v, dtype=np.float64)) for v in values])
    d = np.diff(logs, axis=1)
    valid = np.arange(d.shape[1])[None, :] < (n - 1)[:, None]
    dev = np.abs(d - row_medians(d, valid)[:, None])
    out = 1.4826 * row_medians(dev, valid) / np.sqrt(2.0)
    return np.where(n >= 3, out, 0.0)


def forecast_fit(fc: Forecaster, fit: GroupFit, rows: list[int], targets: list[int],
                 unidentified: frozenset[int] = frozenset(), alias: dict[int, int] | None = None
                 ) -> dict[int, RunForecast]:
    """Forecasts for the fitted `rows` listed in `targets` (indices into fc.histories_).

    Only the targets are evaluated: their per-run parameters are gathered from the group vectors
    (and from each sampled group vector), then the law runs once on (samples x targets) rows.
    Targets in `unidentified` get the band of an unidentified annealing response whatever their
    group has shown (their own decay was seen to mislead the law: `own_decay.check_own_decays`).
    `alias` maps a target that was not fitted to the fitted row whose parameters it uses.
    """
    with phase("bands"):
        return _forecast_fit(fc, fit, rows, targets, unidentified, alias or {})


def _forecast_fit(fc: Forecaster, fit: GroupFit, rows: list[int], targets: list[int],
                  unidentified: frozenset[int], alias: dict[int, int]) -> dict[int, RunForecast]:
    if not targets:
        return {}
    dev = fit.x.device
    pos = {r: k for k, r in enumerate(rows)}
    # a target may stand in for a fitted row (`alias`): the same run under another future schedule
    slots = fit.slots([pos[alias.get(r, r)] for r in targets])
    gi = torch.as_tensor([s[0] for s in slots], device=dev)
    mi = torch.as_tensor([s[1] for s in slots], device=dev)
    hist = [fc.histories_[r] for r in targets]
    horizons = [np.asarray(h.horizon if h.horizon is not None else np.zeros(0), dtype=np.int64) for h in hist]
    # one feature build: each run's last observed step, then its horizon
    both = build_features(hist, [np.r_[h.last_step, hz] for h, hz in zip(hist, horizons)], warmup=fc.warmup,
                          blocks=fit.law.uses_blocks, device=dev)
    last = both.s1[:, :1]
    cols = both.t.shape[1]
    feats = both.points(torch.arange(1, max(2, cols), device=dev).clamp_max(cols - 1).expand(len(hist), -1))
    T = feats.t.shape[0]
    law = fit.law
    point = law.predict(law.natural(fit.run_params()[gi, mi]), feats)  # (T, P)

    # draws keyed by group and run, never by position in the batch (keyed_random)
    gkeys = group_keys(fit, [fc.histories_[r].group for r in rows], fc.seed)
    rkeys = keyed_random.keys([h.run for h in hist], fc.seed, salt="run")
    nh = torch.as_tensor([len(x) for x in horizons], device=dev)
    chol = _chol(fit, fc.inflation)
    n = fc.samples
    if law.amplitude:
        lowest = torch.where(feats.mask, feats.lr, feats.peak[:, None]).amin(1)
        planned = (1.0 - lowest / feats.peak).clamp_min(0.0)  # the decay the horizon reaches
        forced = torch.as_tensor([r in unidentified for r in targets], device=dev)
        unknown = forced | (fit.evidence[gi] < torch.clamp(EVIDENCE_SHARE * planned, min=EVIDENCE_MIN))
        # the share of the peak still to decay after the last observed step: a run already in its
        # cooldown has had part of the gain, which its fit holds
        remaining = ((both.lr[:, 0] - lowest) / feats.peak).clamp_min(0.0)
    else:
        unknown = forced = torch.zeros(T, dtype=torch.bool, device=dev)
    known = (~unknown).nonzero().squeeze(1)
    unknown_idx = unknown.nonzero().squeeze(1)

    noise = torch.as_tensor(noise_scales([h.values for h in hist]), dtype=DTYPE, device=dev)
    # a law extrapolated far past its data errs more than its parameter spread says: an error
    # growing with the log of how far (in LR area, the laws' clock) the point lies past the data
    extra = fc.extrapolation * torch.log(feats.s1 / last).clamp_min(0.0)
    # the group fit's own residual scale stands for the law's misfit, which does not average out
    misfit = fc.misfit * fit.sigma[gi][:, None]
    spread = torch.sqrt(noise[:, None] ** 2 + misfit**2 + extra**2)
    # what siblings trained on the same data order say about each step's deviation from
    # the law: the shift moves every quantile (at the end), and where it applies, the deviation it
    # leaves on the run's observed steps stands for both the noise and the misfit there
    with phase("shared deviations"):
        shared = shared_noise(fit, fc.histories_, rows, targets, slots, fc.warmup, dev) if fc.follow_siblings else {}
    shift = torch.zeros_like(spread)
    for k, r in enumerate(targets):
        if r in shared:
            sn, m = shared[r], len(horizons[k])
            shift[k, :m] = torch.as_tensor(sn.shift, dtype=DTYPE, device=dev)
            left = torch.sqrt((fc.misfit * sn.left) ** 2 + extra[k, :m] ** 2)
            spread[k, :m] = torch.where(torch.as_tensor(sn.covered, device=dev), left, spread[k, :m])
    # the band's levels (p10, p90) first, then any other level asked for; the median is the point
    extra_levels = [lv for lv in fc.levels_ if level_key(lv) not in BAND_LEVELS]
    wanted = [BAND_LEVELS[0], BAND_LEVELS[2], *extra_levels]
    levels = torch.as_tensor(wanted, dtype=DTYPE, device=dev)
    z = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    ranks = [max(1, int(round(level * n))) for level in wanted]  # of n draws
    qs = torch.empty(len(wanted), *point.shape, dtype=DTYPE, device=dev)
    finals = torch.empty(n, T, dtype=DTYPE, device=dev)  # log final value per draw

    if len(known):
        # Gaussian in log space around the point fit: parameter spread plus the terms above. The
        # parameter draws are evaluated at a few knots per run (its last step always one): the
        # spread varies slowly along the horizon, and 100 draws at every step were most of a big
        # batch's cost; it is interpolated back to every step
        knots = _knots(nh[known], KNOTS)
        fk = feats.rows(known).points(knots)
        samples = _draws(fit, chol, gi[known], mi[known], fk, n, gkeys)  # (n, K, knots)
        # the spread from the draws' own quantiles: a few wild draws of a weakly determined
        # parameter must not blow up the band the way they would blow up a variance
        q_lo, q_hi = _kth(samples, ranks[:2])
        width = _interp_rows(fk.t, (q_hi - q_lo) / (z[1] - z[0]), feats.t[known])
        sd = torch.sqrt(width**2 + spread[known] ** 2)
        qs[:, known] = torch.exp(torch.log(point[known])[None] + z[:, None, None] * sd[None])
        finals[:, known] = samples[:, :, -1] + keyed_random.normal(rkeys[known.cpu()], n)[:, 0].to(dev) \
            * spread[known, (nh[known] - 1).clamp_min(0)][None]
    if len(unknown_idx):
        # where the annealing gain is drawn from its range, the quantiles and the median come from
        # the draws themselves, which are far from Gaussian: evaluated at every step
        # the fitted amplitude is noise here (a decay of a few % of the peak, if any): the draws
        # are of the curve without the planned decay, and the gain it brings is drawn on top
        # and the annealing parameters stay at their fit: their spread is what the drawn gain
        # replaces, and draws of unidentified ones swing the curve far off through the warmup's share
        fixed = [law.params.index(name) for name in law.annealing]
        chol_u = _conditional_chol(fit.cov * fc.inflation**2, fixed)
        # a few runs at a time (each run's draws are its own): (draws x runs x steps) tensors that
        # stay small are reused by the allocator instead of being mapped and faulted in afresh
        per = max(1, CHUNK // (n * max(1, feats.t.shape[1])))
        for idx in unknown_idx.split(per):
            fu = feats.rows(idx)
            s1_last, s2_last = both.s1[idx, :1], both.s2[idx, :1]
            samples = _draws(fit, chol_u, gi[idx], mi[idx], _without_future_decay(fu, s1_last, s2_last), n, gkeys,
                             log=False)
            samples = _unidentified_gain(fit, gi[idx], mi[idx], _future_decay_only(fu, s1_last, s2_last), samples,
                                         nh[idx], remaining[idx], keyed_random.derive(rkeys[idx.cpu()], 1))
            point[idx] = _kth(samples, [(n + 1) // 2])[0].exp()  # the lower median, as torch's median
            # one noise draw per parameter draw, shared by the steps: each step's quantiles see the
            # same distribution as with a draw per step and step, at 1/steps of the keyed draws
            # (which were the unidentified bands' largest cost), and the band's edges are smooth
            z = keyed_random.normal(keyed_random.derive(rkeys[idx.cpu()], 2), n).permute(0, 2, 1)
            noisy = samples + z.to(dev) * spread[idx][None]
            for j, q in enumerate(_kth(noisy, ranks)):
                qs[j, idx] = q.exp()
            end = (nh[idx] - 1).clamp_min(0)
            finals[:, idx] = noisy[:, torch.arange(len(idx), device=dev), end]
    qs = (qs * shift.exp()[None]).cpu().numpy()
    point_np = (point * shift.exp()).cpu().numpy()
    samples_np = (finals + shift[torch.arange(T, device=dev), (nh - 1).clamp_min(0)][None]).cpu().numpy()
    theta = law.natural(fit.run_params()[gi, mi]).cpu().numpy()
    # the LR at each horizon step, as the features hold it (the per-step LR at those steps)
    lr_np, has_lr = feats.lr.cpu().numpy(), feats.has_lr.cpu().numpy()
    out = {}
    for k, (r, h, hz) in enumerate(zip(targets, hist, horizons)):
        m = len(hz)
        p50 = point_np[k, :m]
        if m and not (np.all(np.isfinite(p50)) and np.all(p50 > 1e-9)):
            out[r] = RunForecast.skip(h.run, h.group, f"the {law.name} fit diverged (non-positive forecast)", h.metric)
            continue
        notes = []
        if bool(forced[k]):
            notes.append(f"{UNIDENTIFIED_NOTE}: the law fitted to the first half of this run's "
                         "own LR decay forecast its end beyond the uncertainty of the full fit; the band spans "
                         f"0-{MAX_GAIN * float(remaining[k]):.1%} gain from the rest of the planned decay")
        elif bool(unknown[k]) and float(planned[k]) >= EVIDENCE_MIN:  # a horizon that barely decays needs none
            notes.append(f"{UNIDENTIFIED_NOTE}: no run in the group has decayed its LR far "
                         f"enough yet; the band spans 0-{MAX_GAIN * float(remaining[k]):.1%} gain from the "
                         "planned decay")
        if r in shared:
            notes.append(f"the forecast follows the step-to-step deviations that {shared[r].siblings} "
                         "sibling(s) share with this run (same data order)")
        out[r] = RunForecast(
            run=h.run, group=h.group, steps=hz, lr=lr_np[k, :m] if has_lr[k] else np.full(m, np.nan),
            p50=p50, p10=np.minimum(qs[0, k, :m], p50), p90=np.maximum(qs[1, k, :m], p50),
            law=law.name, params={name: float(v) for name, v in zip(law.params, theta[k])}, metric=h.metric,
            final_samples=np.exp(samples_np[:, k]) if m else None, notes=notes, levels=fc.levels_,
            extra_quantiles={level_key(lv): (np.minimum if lv < 0.5 else np.maximum)(qs[j + 2, k, :m], p50)
                             for j, lv in enumerate(extra_levels)},
        )
    return out


def law_spread(fit: GroupFit, gi: torch.Tensor, mi: torch.Tensor, f: Features, n: int,
               gkeys: torch.Tensor, inflation: float = INFLATION) -> tuple[torch.Tensor, torch.Tensor]:
    """The law's value (R, P) for the runs at (gi, mi) on features f, and the spread of its log
    (a robust sd, from the p10-p90 range of n Laplace draws): the parameter part of a band alone."""
    law = fit.law
    point = law.predict(law.natural(fit.run_params()[gi, mi]), f)
    samples = _draws(fit, _chol(fit, inflation), gi, mi, f, n, gkeys)
    lo, hi = _kth(samples, [max(1, int(round(level * n))) for level in (0.1, 0.9)])
    return point, (hi - lo) / (2 * Z90)


def _kth(x: torch.Tensor, ranks: list[int], numpy: bool | None = None) -> list[torch.Tensor]:
    """The `ranks`-th smallest values (1-based) along the first dimension, as torch.kthvalue gives
    them. On the CPU one numpy partition finds them all: torch's kthvalue walks the draws with a
    stride of a whole (runs x points) slice, once per rank, and was the bands' largest cost.
    Elsewhere (CUDA) torch's; `numpy` forces either (tests run the CUDA branch on the CPU)."""
    if not (x.device.type == "cpu" if numpy is None else numpy):
        return [x.kthvalue(k, dim=0).values for k in ranks]
    # the draws made the last, contiguous axis first: a partition along a strided axis costs half again
    part = np.ascontiguousarray(np.moveaxis(x.numpy(), 0, -1))
    part.partition([k - 1 for k in ranks], axis=-1)
    return [torch.from_numpy(np.ascontiguousarray(part[..., k - 1])) for k in ranks]


def _chol(fit: GroupFit, inflation: float = INFLATION) -> torch.Tensor:
    """Cholesky factor of the fit's Laplace covariance scaled by `inflation`, the parameter draws' scale."""
    eye = torch.eye(fit.x.shape[-1], dtype=DTYPE, device=fit.x.device)
    return torch.linalg.cholesky(fit.cov * inflation**2 + EPS * eye)


def group_keys(fit: GroupFit, groups: list[str], seed: int) -> torch.Tensor:
    """One key per fitted group (`groups`: the group name of each fitted row position)."""
    first = fit.members[:, 0].cpu().tolist()
    return keyed_random.keys([groups[i] for i in first], seed, salt=f"group:{fit.law.name}")


def _draws(fit: GroupFit, chol: torch.Tensor, gi: torch.Tensor, mi: torch.Tensor, f: Features, n: int,
           gkeys: torch.Tensor, log: bool = True) -> torch.Tensor:
    """Log predictions (n, R, P) of the runs at (gi, mi) on features f under n draws of the
    group vectors from their Laplace Gaussian, in chunks of bounded size (`log=False`: the
    predictions themselves, floored as the logs are)."""
    law = fit.law
    R, P = f.t.shape
    per = max(1, CHUNK // max(1, R * P * max(1, f.drop.shape[1])))
    out = []
    for start in range(0, n, per):
        k = min(per, n - start)
        z = keyed_random.normal(gkeys, k, fit.x.shape[1], start=start).permute(0, 2, 1).to(fit.x.device)
        xs = fit.x + (chol @ z.unsqueeze(-1)).squeeze(-1)  # (k, G, q)
        u = fit.run_params(xs)[:, gi, mi]  # (k, R, p)
        rows = f.rows(torch.arange(R, device=fit.x.device).repeat(k), only=law.reads)
        out.append(law.predict(law.natural(u.reshape(k * R, -1)), rows).reshape(k, R, P))
    pred = torch.cat(out).clamp_min(EPS)
    return torch.log(pred) if log else pred


def _knots(n: torch.Tensor, k: int) -> torch.Tensor:
    """(R, min(k, max n)) positions along each row's n points, evenly spread, first and last
    included; rows with fewer points repeat their last (0 for an empty row)."""
    width = max(1, min(k, int(n.max()) if len(n) else 1))
    frac = torch.linspace(0.0, 1.0, width, dtype=DTYPE, device=n.device)
    last = (n - 1).clamp_min(0).to(DTYPE)[:, None]
    return torch.round(frac[None] * last).long()


def _interp_rows(xk: torch.Tensor, yk: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Row-wise linear interpolation: knots xk (R, K) ascending with values yk, at x (R, P)."""
    if xk.shape[1] == 1:
        return yk.expand_as(x).clone()
    i = torch.searchsorted(xk.contiguous(), x.contiguous(), right=True).clamp(1, xk.shape[1] - 1)
    x0, x1 = torch.gather(xk, 1, i - 1), torch.gather(xk, 1, i)
    y0, y1 = torch.gather(yk, 1, i - 1), torch.gather(yk, 1, i)
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(TINY), torch.zeros_like(x)).clamp(0.0, 1.0)
    return y0 + w * (y1 - y0)


def _conditional_chol(cov: torch.Tensor, fixed: list[int]) -> torch.Tensor:
    """Cholesky factor of the Gaussian (G, q, q) with the `fixed` coordinates held at their mean:
    the others' conditional covariance, zero (up to jitter) for the fixed ones."""
    q = cov.shape[-1]
    free = torch.as_tensor([i for i in range(q) if i not in fixed], device=cov.device)
    held = torch.as_tensor(fixed, device=cov.device)
    out = torch.zeros_like(cov)
    if len(free):
        rr = cov[:, free][:, :, free]
        if len(held):
            rs = cov[:, free][:, :, held]
            ss = cov[:, held][:, :, held]
            rr = rr - rs @ torch.linalg.solve(ss, rs.transpose(1, 2))
        out[:, free.unsqueeze(1), free.unsqueeze(0)] = 0.5 * (rr + rr.transpose(1, 2))
    eye = torch.eye(q, dtype=cov.dtype, device=cov.device)
    return torch.linalg.cholesky(out + EPS * eye)


def _without_future_decay(f: Features, s1_last: torch.Tensor, s2_last: torch.Tensor) -> Features:
    """The same runs had their LR not decayed after the last observed step: the momentum area stops
    growing and the LR decreases after that step leave the multi-power sum (its rises stay)."""
    after = f.s1_k >= s1_last
    return replace(f, s2=torch.minimum(f.s2, s2_last), drop=torch.where(after, f.drop.clamp_max(0.0), f.drop))


def _future_decay_only(f: Features, s1_last: torch.Tensor, s2_last: torch.Tensor) -> Features:
    """Only the LR decreases after the last observed step: what a planned decay adds."""
    after = f.s1_k >= s1_last
    return replace(f, s2=(f.s2 - s2_last).clamp_min(0.0),
                   drop=torch.where(after, f.drop.clamp_min(0.0), torch.zeros_like(f.drop)))


def _unidentified_gain(fit: GroupFit, gi, mi, feats: Features, samples, nh, planned, keys) -> torch.Tensor:
    """Draws of targets whose group's data cannot identify the annealing gain, the gain redrawn:
    `samples` are draws of the curve without the planned decay (not logged), and the gain its decay brings is
    drawn between none and MAX_GAIN of the loss at the end, scaled by how far the LR decays
    (`planned`, a share of the peak: a horizon at constant LR gains nothing)."""
    law = fit.law
    theta = law.natural(fit.run_params()[gi, mi]).clone()  # (T, p)
    for name, v in law.shape_prior.items():
        theta[:, law.params.index(name)] = v
    amp = law.params.index(law.amplitude)
    theta[:, amp] = 0.0
    off = law.predict(theta, feats)
    theta[:, amp] = 1.0
    shape = off - law.predict(theta, feats)  # (T, P): the planned decay's gain per unit amplitude
    last = (nh - 1).clamp_min(0)[:, None]
    at_end = torch.gather(shape, 1, last)
    unit = torch.where(at_end > 0, (shape / at_end.clamp_min(TINY)).clamp(0.0, 1.0), torch.zeros_like(shape))
    level = torch.gather(samples, 2, last.expand(samples.shape[0], -1, -1)).median(0).values
    rel = unit * level * planned[:, None]  # gain in loss units for the whole share
    # stratified: one gain per n-quantile of the range, shuffled against the parameter draws, so
    # the median forecast does not move by a Monte Carlo error of ~0.4 % from seed to seed
    n = samples.shape[0]
    phi = ((keyed_random.permutation(keys, n).to(DTYPE) + 0.5) / n * MAX_GAIN).to(samples.device)[:, :, None]
    return torch.log((samples - phi * rel).clamp_min(EPS))
