"""A run's own unfinished LR decay as the only evidence of its annealing response: is the law's
forecast of the rest of that decay trustworthy? Checked by refitting on half of the decay seen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from forecaster import bands
from forecaster.batch import Features, build_features, decay_shares
from forecaster.bands import EVIDENCE_MIN
from forecaster.eligibility import MIN_POINTS
from forecaster.histories import RunForecast, RunHistory, planned_end
from forecaster.lawchoice import CONTEST_MAX, spread
from forecaster.params import clone
from forecaster.stats import Z90

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.forecast import Forecaster


def check_own_decays(fc: Forecaster, done: dict[int, RunForecast]) -> dict[str, set[int]]:
    """Targets of `fc` (by fit key) whose annealing response only their own unfinished LR decay
    has shown, and whose law does not extrapolate that decay within its band.

    A law fitted on part of a cooldown can extrapolate the rest far off while its band, drawn
    from a tight fit, stays narrow (the momentum law forecast a lone GPT-2 run seen to 85 %
    12 % below its end, docs/benchmarks.md). So each such run is refitted on its points up to
    where half of its decay so far had happened, in one batched call per law, and that fit's
    forecast of the run's end is compared with the full fit's. Where they differ by more than
    the full band and the half fit's own parameter spread allow, the response counts as not
    identified. A law that does describe the decay passes: forecasts from half the decay and
    from all of it agree within their uncertainty.
    """
    hist = fc.histories_
    cut: dict[int, RunHistory] = {}
    for key, (fit, rows) in fc.fits_.items():
        if not fit.law.amplitude:
            continue
        shares = decay_shares([hist[r] for r in rows], fc.warmup)
        decays = {r: (float(a), float(b), int(c)) for r, a, b, c in zip(rows, *shares)}
        top: dict[str, list[float]] = {}  # the two largest decays so far in each group
        for r in rows:
            g = top.setdefault(hist[r].group, [0.0, 0.0])
            g[:] = sorted(g + [decays[r][0]], reverse=True)[:2]
        for r in rows:
            f, h = done.get(r), hist[r]
            if f is None or f.skipped or not len(f.steps) or fc.choice_.get(r) != key:
                continue
            seen, planned, half = decays[r]
            first, second = top[h.group]
            shown = second if seen == first else first  # the most any sibling has shown
            if not (EVIDENCE_MIN <= seen <= planned - EVIDENCE_MIN and shown < planned - EVIDENCE_MIN):
                continue
            keep = h.steps <= half
            if keep.sum() < MIN_POINTS or (~keep).sum() < MIN_POINTS:
                continue
            cut[r] = RunHistory(h.run, h.steps[keep], h.values[keep], group=h.group, lr_steps=h.lr_steps,
                                lr_values=h.lr_values, schedule=h.schedule, horizon=h.horizon[-1:],
                                size=h.size, metric=h.metric, meta={"planned_end": planned_end(h)})
    if not cut:
        return {}
    flagged: dict[str, set[int]] = {}
    for key, (fit, rows) in fc.fits_.items():
        mine = [r for r in rows if r in cut and fc.choice_.get(r) == key]
        if not mine:
            continue
        groups = {hist[r].group for r in mine}
        # the checked runs, and as their context at most CONTEST_MAX of each group's others,
        # spread over it (a 1,000-run group refitted whole was a fifth of an incremental sync)
        others: dict[str, list[int]] = {}
        for r in rows:
            if hist[r].group in groups and r not in cut:
                others.setdefault(hist[r].group, []).append(r)
        context = {r for members in others.values() for r in spread(members, CONTEST_MAX)}
        sub_rows = [r for r in rows if (r in cut and hist[r].group in groups) or r in context]
        sub_hist = [cut.get(r, hist[r]) for r in sub_rows]
        # an independent refit: a warm start (and its prior) at the full fit would pull it there
        sub = clone(fc, law=fit.law.name, follow_siblings=False, init=None).fit(sub_hist)
        at = {r: k for k, r in enumerate(sub_rows)}
        # the cut histories keep the full ones' LR and last horizon step: one feature build serves both
        feats = build_features([hist[r] for r in mine], [hist[r].horizon[-1:] for r in mine], warmup=fc.warmup,
                               blocks=fit.law.uses_blocks, device=fc.device_)
        from_half, sd_half = law_at_end(sub, sub_hist, [at[r] for r in mine], feats)
        from_all, _ = law_at_end(fc, hist, mine, feats)
        for r, a, b, sd in zip(mine, from_half, from_all, sd_half):
            f = done[r]
            # the two forecasts must agree within what the full band and the half fit's own
            # parameter spread allow together (80 %, as the band); deviations from the law that
            # siblings share (the same data order) are left out of both, and a non-positive or
            # failed forecast from half the decay fails outright
            sd_band = np.log(f.p90[-1] / f.p10[-1]) / (2 * Z90)
            tolerance = Z90 * np.hypot(sd_band, sd)
            if not (a > 0 and b > 0 and abs(np.log(a / b)) <= tolerance):
                flagged.setdefault(key, set()).add(r)
    return flagged


def law_at_end(fc: Forecaster, hist: list[RunHistory], rows: list[int], feats: Features | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The fitted law's own value at each of `rows`' last horizon step (no band terms, no siblings'
    deviations), from the fits of `fc` (fitted on `hist`), and the spread of its log there;
    `feats`: the rows' features at that step when already built."""
    point, sd = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for key, (fit, fit_rows) in fc.fits_.items():
        mine = [(k, r) for k, r in enumerate(rows) if fc.choice_.get(r) == key]
        if not mine:
            continue
        pos = {r: k for k, r in enumerate(fit_rows)}
        slots = fit.slots([pos[r] for _, r in mine])
        gi = torch.as_tensor([g for g, _ in slots], device=fit.x.device)
        mi = torch.as_tensor([m for _, m in slots], device=fit.x.device)
        at = [k for k, _ in mine]
        if feats is None:
            f = build_features([hist[r] for _, r in mine], [hist[r].horizon[-1:] for _, r in mine],
                               warmup=fc.warmup, blocks=fit.law.uses_blocks, device=fc.device_)
        else:
            f = feats.rows(torch.as_tensor(at, device=feats.t.device))
        gkeys = bands.group_keys(fit, [hist[r].group for r in fit_rows], fc.seed)
        p, s = bands.law_spread(fit, gi, mi, f, fc.samples, gkeys, fc.inflation)
        point[at], sd[at] = p[:, 0].cpu().numpy(), s[:, 0].cpu().numpy()
    return point, sd

