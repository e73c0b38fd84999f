"""The forecaster estimator: histories in, fitted laws per group, forecasts with bands out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from forecaster import bands, laws
from forecaster.batch import build_features, decay_shares, lr_per_step
from forecaster.bands import EVIDENCE_MIN
from forecaster.stats import Z90
from forecaster.device import DTYPE, pick_device
from forecaster.errors import InputError
from forecaster.fit import GroupFit, fit_groups
from forecaster.histories import RunForecast, RunHistory
from forecaster.phases import phase

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.schedules import Schedule

log = logging.getLogger(__name__)

MIN_POINTS = 5
# a run with fewer points is still forecast when a sibling has MIN_POINTS: the group's fit holds
# the law's shape, and the run's own parameters deviate from it under the pooling penalty
MIN_POOLED = 2
# largest metric value a run may reach: the fit clamps its predictions to 1e12 (fit.py), and
# two decades of headroom keep a forecast scale-free; above it the fit and its bands are
# nonsense or the covariance overflows, so such a run is declined with a hint to rescale
MAX_VALUE = 1e10
HOLDOUT = 0.2
SIMPLER_MARGIN = 0.6
# share of each run's planned steps that an LR-law fit leaves out where it misses them: the first
# transient, as in Luo et al.'s fits, whose data begin after a warmup of 9 % of the run
# (docs/benchmarks.md)
SKIP_EARLY = 0.1
# an early stretch whose residuals' chunk means exceed this many times their noise is misfit
EARLY_MISFIT = 4.0


# working memory of a fit and its bands per fitted or forecast point of a run (measured on the
# speed benchmark: peak RSS over the data, 1,000 runs x 800 points; the Jacobian of every start,
# the band draws at knots and the features dominate)
BYTES_PER_POINT = 1200


def group_chunks(histories: list[RunHistory], budget: int, max_points: int = 512) -> list[list[int]]:
    """Indices of `histories` in chunks of whole groups, in order of first appearance, each
    expected to need at most `budget` bytes of working memory (a group bigger than that is a
    chunk of its own): a big input is fitted chunk by chunk in bounded memory."""
    order: dict[str, list[int]] = {}
    cost: dict[str, int] = {}
    for i, h in enumerate(histories):
        order.setdefault(h.group, []).append(i)
        points = min(len(h.steps), max_points) + (len(h.horizon) if h.horizon is not None else 0)
        cost[h.group] = cost.get(h.group, 0) + BYTES_PER_POINT * max(points, 1)
    chunks: list[list[int]] = [[]]
    used = 0
    for g, members in order.items():
        if chunks[-1] and used + cost[g] > budget:
            chunks.append([])
            used = 0
        chunks[-1].extend(members)
        used += cost[g]
    return [c for c in chunks if c]


@dataclass
class _Plan:
    """Which runs are fitted together, on which points, with which candidate laws."""

    rows: list[int]  # indices into the fitted histories
    groups: list[list[int]]  # member rows (into `rows`) of each fitting group
    candidates: list[str]


def _fit_points(h: RunHistory, max_points: int, skip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The observed points a law is fitted on: all, or means of equal-count bins when many; the
    points in the first `skip` share of the run's planned steps are left out (a run seen only
    briefly keeps at least the later half of its points)."""
    steps, values = h.steps, h.values
    n = len(steps)
    if skip > 0 and n >= 2 * MIN_POINTS:
        end = h.meta.get("planned_end") or _planned_end(h)
        keep = (steps >= skip * end) | (np.arange(n) >= n // 2)
        steps, values, n = steps[keep], values[keep], int(keep.sum())
    if n <= max_points:
        return steps, values
    edges = np.linspace(0, n, max_points + 1).astype(int)
    counts = np.diff(edges)
    binned = np.round(np.add.reduceat(steps.astype(float), edges[:-1]) / counts).astype(np.int64)
    return binned, np.add.reduceat(values, edges[:-1]) / counts


def informative_lr(h: RunHistory) -> bool:
    """The run has a learning rate the LR laws can read: a schedule, or logged values not all zero
    (an LR logged as 0 throughout says nothing of the schedule; the run gets the schedule-free laws)."""
    return h.schedule is not None or (h.has_lr and bool(np.any(np.asarray(h.lr_values) > 0)))


def rises(values: np.ndarray) -> bool:
    """Does the metric clearly rise over the run (its last quarter above its first by far more than
    its noise)? The laws model a falling, loss-like metric: an accuracy or a reward is not one, nor
    a run that diverged; a flat noisy curve is (it is forecast flat)."""
    q = len(values) // 4
    if q < 2:
        return False
    logs = np.log(values)
    gap = float(np.median(logs[-q:]) - np.median(logs[:q]))
    return gap > 5.0 * bands.noise_scale(values) * np.sqrt(2.0 / q) + 1e-3


def rising(values: list[np.ndarray]) -> np.ndarray:
    """`rises` of every curve at once."""
    if not values:
        return np.zeros(0, dtype=bool)
    logs, n = bands._padded([np.log(np.asarray(v, dtype=np.float64)) for v in values])
    q = n // 4
    col = np.arange(logs.shape[1])[None, :]
    first = bands.row_medians(logs, col < q[:, None])
    last = bands.row_medians(logs, (col >= (n - q)[:, None]) & (col < n[:, None]))
    with np.errstate(invalid="ignore", divide="ignore"):
        bar = 5.0 * bands.noise_scales(values) * np.sqrt(2.0 / np.maximum(q, 1)) + 1e-3
        return (q >= 2) & (last - first > bar)


def _planned_end(h: RunHistory) -> int:
    """The run's last known step: its last horizon row, else its last observed step."""
    last = int(h.steps[-1]) if len(h.steps) else 0
    return max(last, int(h.horizon[-1])) if h.horizon is not None and len(h.horizon) else last


class Forecaster:
    """Fit loss-curve laws to runs (jointly per group) and forecast each run's horizon.

    Settings are constructor arguments (scikit-learn style); `fit` learns, `predict` answers.
    ``law="auto"`` picks, per group, the candidate law that best forecasts the held-back last
    ``holdout`` share of the runs being forecast, not the one with the smallest training error.
    ``follow_siblings`` carries over the deviations from the law that siblings share with
    a run step by step (the same data order; `shared_noise`), where they are measured to share them.
    """

    def __init__(
        self,
        law: str = "auto",
        *,
        device: str | None = None,
        seed: int = 0,
        quantiles: tuple[float, float, float] = (0.1, 0.5, 0.9),
        warmup: str = "linear",
        pool: float = 0.1,
        max_points: int = 512,
        holdout: float = HOLDOUT,
        samples: int = 100,
        skip_early: float = SKIP_EARLY,
        follow_siblings: bool = True,
    ) -> None:
        self.law = law
        self.device = device
        self.seed = seed
        self.quantiles = quantiles
        self.warmup = warmup
        self.pool = pool
        self.max_points = max_points
        self.holdout = holdout
        self.samples = samples
        self.skip_early = skip_early
        self.follow_siblings = follow_siblings

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, histories: list[RunHistory]) -> "Forecaster":
        """Fit every group of `histories` in one batched program per candidate law."""
        if self.law != "auto":
            laws.get(self.law)  # fail early on a bad name
        self.device_ = pick_device(self.device)
        self.histories_ = list(histories)
        self.skipped_: dict[int, str] = {}
        law = laws.get(self.law) if self.law != "auto" else None
        # under a law whose parameters are all shared (size-aware), a run needs no points of its
        # own: its size and schedule place it on the group's law
        shared_law = law is not None and set(law.annealing) == set(law.params)
        with phase("plan"):
            fitted_groups = {h.group for h in self.histories_ if len(h.steps) >= MIN_POINTS}
            positive = [bool(len(h.values) == 0 or (h.values.min() > 0 and h.values.max() <= MAX_VALUE))
                        for h in self.histories_]
            # the rising check only where the others pass (a log of a non-positive value is NaN)
            up = dict(zip((i for i, ok in enumerate(positive) if ok),
                          rising([h.values for h, ok in zip(self.histories_, positive) if ok])))
            for i, h in enumerate(self.histories_):
                if law is not None and law.needs_size and not (h.size and h.size > 0):
                    self.skipped_[i] = f"law {self.law!r} needs the model size and the run has none"
                elif len(h.steps) < MIN_POINTS and not ((shared_law or len(h.steps) >= MIN_POOLED)
                                                        and h.group in fitted_groups):
                    self.skipped_[i] = (f"too few points to fit ({len(h.steps)} < {MIN_POINTS}, or "
                                        f"{MIN_POOLED} with siblings that have {MIN_POINTS})")
                elif np.any(h.values <= 0):
                    self.skipped_[i] = "metric has non-positive values; the laws model a positive loss"
                elif np.any(h.values > MAX_VALUE):
                    self.skipped_[i] = (f"metric reaches {float(np.max(h.values)):.3g}, beyond the fit's range (up to "
                                        f"{MAX_VALUE:.0e}); rescale it, e.g. divide by a power of ten")
                elif up[i]:
                    self.skipped_[i] = ("metric rises over the run; the laws model a falling, loss-like metric "
                                        "(forecast an error such as 1 - accuracy instead)")
                elif self.law != "auto" and laws.get(self.law).needs_lr and not informative_lr(h):
                    self.skipped_[i] = (f"law {self.law!r} needs a learning rate and the run has none "
                                        "(or logs 0 throughout)")
            plans = self._plans()
        self.choice_: dict[int, str] = {}
        self.fits_: dict[str, tuple[GroupFit, list[int]]] = {}
        self.validation_: dict[int, dict[str, float]] = {}
        torch.manual_seed(self.seed)
        for plan in plans:
            with phase("law choice"):
                chosen = self._select(plan)
            for law_name in sorted(set(chosen.values())):
                grp_ids = [g for g, name in chosen.items() if name == law_name]
                for ids, fit, rows in self._fit_skipping_transients(law_name, plan, grp_ids):
                    key = f"{law_name}:{len(self.fits_)}"
                    self.fits_[key] = (fit, rows)
                    for g in ids:
                        for m in plan.groups[g]:
                            self.choice_[plan.rows[m]] = key
        return self

    def _fit_skipping_transients(self, law_name: str, plan: _Plan, grp_ids: list[int]):
        """Fit `law_name` to the groups `grp_ids` on every point; refit, without the first
        `skip_early` share of each run, the groups whose early points that fit misses: the first
        transient (the loss falling from about ln(vocab)) that LR laws do not describe. A curve the
        law does describe from its start keeps all its points. Yields (group ids, fit, rows)."""
        groups = [plan.groups[g] for g in grp_ids]
        if not (laws.get(law_name).needs_lr and self.skip_early > 0):
            fit, rows, _ = self._fit(law_name, plan, groups, self.histories_, skip=0.0)
            yield grp_ids, fit, rows
            return
        fit, rows, early = self._fit(law_name, plan, groups, self.histories_, skip=0.0, early=self.skip_early)
        flagged = [k for k, g in enumerate(groups) if any(early.get(plan.rows[m], False) for m in g)]
        kept = [grp_ids[k] for k in range(len(groups)) if k not in flagged]
        if kept:
            yield kept, fit, rows
        if flagged:
            refit, rows2, _ = self._fit(law_name, plan, [groups[k] for k in flagged], self.histories_,
                                        skip=self.skip_early)
            yield [grp_ids[k] for k in flagged], refit, rows2

    def _plans(self) -> list[_Plan]:
        """Split fittable runs by whether they carry LR information; group by `group`."""
        out = []
        for has_lr in (True, False):
            idx = [i for i, h in enumerate(self.histories_)
                   if i not in self.skipped_ and informative_lr(h) == has_lr]
            if not idx:
                continue
            by_group: dict[str, list[int]] = {}
            for k, i in enumerate(idx):
                by_group.setdefault(self.histories_[i].group, []).append(k)
            if self.law != "auto":
                cands = [self.law]
            else:
                names = laws.automatic(needs_lr=has_lr)
                cands = sorted(names, key=lambda n: (len(laws.get(n).params), n))
            out.append(_Plan(rows=idx, groups=list(by_group.values()), candidates=cands))
        return out

    def _fit(self, law_name: str, plan: _Plan, groups: list[list[int]], hist: list[RunHistory],
             skip: float | None = None, early: float = 0.0):
        """Fit one law to `groups` (member indices into plan.rows) of `hist`, leaving out each
        run's first `skip` share (default: `skip_early` for LR laws). With `early`, also says per
        run (row -> bool) whether the fit misses its points in that first share (`_misfits_early`)."""
        with phase("fit setup"):
            return self._fit_inner(law_name, plan, groups, hist, skip, early)

    def _fit_inner(self, law_name, plan, groups, hist, skip, early):
        rows = sorted({plan.rows[m] for g in groups for m in g})
        pos = {r: k for k, r in enumerate(rows)}
        law = laws.get(law_name)
        if skip is None:
            # LR laws describe training after its first transient (the loss falling from
            # ln(vocab)), which they misfit by several % and which would bend their fit
            skip = self.skip_early if law.needs_lr else 0.0
        # a law whose evaluation is costly (the multi-power double sum) is fitted on fewer points
        most = min(self.max_points, law.max_points or self.max_points)
        pts = [_fit_points(hist[r], most, skip) for r in rows]
        feats = build_features([hist[r] for r in rows], [p[0] for p in pts], warmup=self.warmup,
                               blocks=law.uses_blocks, device=self.device_)
        P = feats.t.shape[1]
        y = torch.ones(len(rows), P, dtype=DTYPE, device=self.device_)
        for k, (_, v) in enumerate(pts):
            y[k, : len(v)] = torch.as_tensor(v, dtype=DTYPE)
        M = max(len(g) for g in groups)
        members = torch.full((len(groups), M), -1, dtype=torch.long, device=self.device_)
        for gi, g in enumerate(groups):
            members[gi, : len(g)] = torch.as_tensor([pos[plan.rows[m]] for m in g])
        fit = fit_groups(law, feats, y, members, pool=self.pool)
        with phase("transient check"):
            flags = _misfits_early(fit, feats, y, members, [hist[r] for r in rows], early) if early else {}
        return fit, rows, {rows[k]: v for k, v in flags.items()}

    def _select(self, plan: _Plan) -> dict[int, str]:
        """Per group, the candidate that best forecasts the held-back tail of its target runs."""
        if len(plan.candidates) == 1:
            return {g: plan.candidates[0] for g in range(len(plan.groups))}
        cut_hist = list(self.histories_)
        held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for m, r in enumerate(plan.rows):
            h = self.histories_[r]
            if h.horizon is None or len(h.horizon) == 0:
                continue
            n = len(h.steps)
            k = int(round(n * (1 - self.holdout)))
            if k < MIN_POINTS or k >= n:
                continue
            held[r] = (h.steps[k:], h.values[k:])
            cut_hist[r] = RunHistory(h.run, h.steps[:k], h.values[:k], group=h.group, lr_steps=h.lr_steps,
                                     lr_values=h.lr_values, schedule=h.schedule, horizon=h.steps[k:],
                                     size=h.size, metric=h.metric, meta={"planned_end": _planned_end(h)})
        # a lone run cannot tell one annealing law from another (its own prefix rarely shows the
        # decay it will see), so only groups of siblings with something held back are contested
        contested = [g for g, members in enumerate(plan.groups)
                     if len(members) > 1 and any(plan.rows[m] in held for m in members)]
        scores = np.full((len(plan.groups), len(plan.candidates)), np.inf)
        scores[:, 0] = 0.0
        # besides the targets' held-back tails, each law is judged on how well it reproduces the
        # finished siblings' last fifth (where their LR decays mostly sit): a law that cannot fit
        # the annealing its group has shown should not be trusted to forecast it
        check = dict(held)
        for g in contested:
            for m in plan.groups[g]:
                r = plan.rows[m]
                h = self.histories_[r]
                if r not in held and not (h.horizon is not None and len(h.horizon)):
                    k = int(round(len(h.steps) * (1 - self.holdout)))
                    check[r] = (h.steps[k:], h.values[k:])
        for c, name in enumerate(plan.candidates if contested else []):
            fit, rows, _ = self._fit(name, plan, [plan.groups[g] for g in contested], cut_hist)
            targets = [(k, mi, plan.rows[m]) for k, g in enumerate(contested)
                       for mi, m in enumerate(plan.groups[g]) if plan.rows[m] in check]
            feats = build_features([cut_hist[r] for _, _, r in targets], [check[r][0] for _, _, r in targets],
                                   warmup=self.warmup, blocks=fit.law.uses_blocks, device=self.device_)
            gi = torch.as_tensor([k for k, _, _ in targets], device=self.device_)
            mi = torch.as_tensor([m for _, m, _ in targets], device=self.device_)
            pred = fit.law.predict(fit.law.natural(fit.run_params()[gi, mi]), feats).cpu().numpy()
            errs: dict[int, tuple[list[float], list[float]]] = {}
            for j, (k, _, r) in enumerate(targets):
                n = len(check[r][1])
                e = _bias(np.log(np.clip(pred[j, :n], 1e-12, None)) - np.log(check[r][1]))
                self.validation_.setdefault(r, {})[name] = e
                errs.setdefault(contested[k], ([], []))[0 if r in held else 1].append(e)
            for g, (tail, sibs) in errs.items():
                score = np.mean(tail) if not sibs else 0.5 * (np.mean(tail) + np.mean(sibs))
                scores[g, c] = score if np.isfinite(score) else np.inf
        return {g: plan.candidates[_prefer_simple(scores[g])] for g in range(len(plan.groups))}

    # -- forecasting -------------------------------------------------------------------------
    def _forecasts(self) -> dict[int, RunForecast]:
        """Every fitted target's forecast, by history index."""
        done: dict[int, RunForecast] = {}
        for key, (fit, rows) in self.fits_.items():
            targets = [r for r in rows if self.choice_.get(r) == key]
            done.update(bands.forecast_fit(self, fit, rows, targets))
        return done

    def _check_own_decays(self, done: dict[int, RunForecast]) -> dict[str, set[int]]:
        """Targets (by fit key) whose annealing response only their own unfinished LR decay has
        shown, and whose law does not extrapolate that decay within its band.

        A law fitted on part of a cooldown can extrapolate the rest far off while its band, drawn
        from a tight fit, stays narrow (the momentum law forecast a lone GPT-2 run seen to 85 %
        12 % below its end, docs/benchmarks.md). So each such run is refitted on its points up to
        where half of its decay so far had happened, in one batched call per law, and that fit's
        forecast of the run's end is compared with the full fit's. Where they differ by more than
        the full band and the half fit's own parameter spread allow, the response counts as not
        identified. A law that does describe the decay passes: forecasts from half the decay and
        from all of it agree within their uncertainty.
        """
        cut: dict[int, RunHistory] = {}
        for key, (fit, rows) in self.fits_.items():
            if not fit.law.amplitude:
                continue
            shares = decay_shares([self.histories_[r] for r in rows], self.warmup)
            decays = {r: (float(a), float(b), int(c)) for r, a, b, c in zip(rows, *shares)}
            top: dict[str, list[float]] = {}  # the two largest decays so far in each group
            for r in rows:
                g = top.setdefault(self.histories_[r].group, [0.0, 0.0])
                g[:] = sorted(g + [decays[r][0]], reverse=True)[:2]
            for r in rows:
                f, h = done.get(r), self.histories_[r]
                if f is None or f.skipped or not len(f.steps) or self.choice_.get(r) != key:
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
                                    size=h.size, metric=h.metric, meta={"planned_end": _planned_end(h)})
        if not cut:
            return {}
        flagged: dict[str, set[int]] = {}
        for key, (fit, rows) in self.fits_.items():
            mine = [r for r in rows if r in cut and self.choice_.get(r) == key]
            if not mine:
                continue
            groups = {self.histories_[r].group for r in mine}
            sub_rows = [r for r in rows if self.histories_[r].group in groups]
            sub_hist = [cut.get(r, self.histories_[r]) for r in sub_rows]
            sub = Forecaster(fit.law.name, device=self.device, seed=self.seed, quantiles=self.quantiles,
                             warmup=self.warmup, pool=self.pool, max_points=self.max_points, holdout=self.holdout,
                             samples=self.samples, skip_early=self.skip_early, follow_siblings=False).fit(sub_hist)
            at = {r: k for k, r in enumerate(sub_rows)}
            from_half, sd_half = _law_at_end(sub, sub_hist, [at[r] for r in mine])
            from_all, _ = _law_at_end(self, self.histories_, mine)
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

    def predict_schedules(self, run: int | str, candidates: list[Schedule]) -> list[RunForecast]:
        """The fitted run `run` (index into the fitted histories, or run id) forecast under each
        candidate schedule for the rest of its training, in one batched call (`whatif`)."""
        from forecaster import whatif

        i = run if isinstance(run, int) else next((k for k, h in enumerate(self.histories_) if h.run == run), None)
        if i is None or not 0 <= i < len(self.histories_):
            raise InputError(f"run {run!r} is not among the fitted histories")
        if i in self.skipped_:
            raise InputError(f"run {self.histories_[i].run!r} was not fitted: {self.skipped_[i]}")
        key = self.choice_[i]
        fit, rows = self.fits_[key]
        base = len(self.histories_)
        variants = [whatif.variant(self.histories_[i], s) for s in candidates]
        self.histories_.extend(variants)
        try:
            extra = list(range(base, base + len(variants)))
            done = bands.forecast_fit(self, fit, rows, extra, alias={j: i for j in extra})
        finally:
            del self.histories_[base:]
        return [done[j] for j in extra]

    def predict(self) -> list[RunForecast]:
        """One forecast per fitted history, in order; skipped runs carry the reason."""
        done = self._forecasts()
        with phase("own-decay check"):
            flagged_by_fit = self._check_own_decays(done)
        for key, flagged in flagged_by_fit.items():
            fit, rows = self.fits_[key]
            done.update(bands.forecast_fit(self, fit, rows, sorted(flagged), unidentified=frozenset(flagged)))
        out = []
        for i, h in enumerate(self.histories_):
            if i in self.skipped_:
                out.append(RunForecast.skip(h.run, h.group, self.skipped_[i], h.metric))
            else:
                out.append(done[i])
        return out


def _law_at_end(fc: "Forecaster", hist: list[RunHistory], rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The fitted law's own value at each of `rows`' last horizon step (no band terms, no siblings'
    deviations), from the fits of `fc` (fitted on `hist`), and the spread of its log there."""
    point, sd = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for key, (fit, fit_rows) in fc.fits_.items():
        mine = [(k, r) for k, r in enumerate(rows) if fc.choice_.get(r) == key]
        if not mine:
            continue
        pos = {r: k for k, r in enumerate(fit_rows)}
        slots = fit.slots([pos[r] for _, r in mine])
        gi = torch.as_tensor([g for g, _ in slots], device=fit.x.device)
        mi = torch.as_tensor([m for _, m in slots], device=fit.x.device)
        feats = build_features([hist[r] for _, r in mine], [hist[r].horizon[-1:] for _, r in mine],
                               warmup=fc.warmup, blocks=fit.law.uses_blocks, device=fc.device_)
        gkeys = bands.group_keys(fit, [hist[r].group for r in fit_rows], fc.seed)
        p, s = bands.law_spread(fit, gi, mi, feats, fc.samples, gkeys)
        at = [k for k, _ in mine]
        point[at], sd[at] = p[:, 0].cpu().numpy(), s[:, 0].cpu().numpy()
    return point, sd


def _misfits_early(fit: GroupFit, feats, y: torch.Tensor, members: torch.Tensor, hist: list[RunHistory],
                   share: float) -> dict[int, bool]:
    """Per fitted row: does the fit miss the row's points in the first `share` of its planned
    steps? Judged by the chunked bias of the log residuals there against what noise alone would
    leave in a chunk mean (EARLY_MISFIT x the fit's robust scale / sqrt(points per chunk))."""
    valid = members >= 0
    g_idx, m_idx = valid.nonzero(as_tuple=True)
    rows = members[g_idx, m_idx]
    u = fit.run_params()[g_idx, m_idx]  # (R, p) in the order of `rows`
    pred = fit.law.predict(fit.law.natural(u), feats.rows(rows))
    r = (torch.log(pred.clamp_min(1e-12)) - torch.log(y[rows].clamp_min(1e-12))).cpu().numpy()
    t, mask = feats.t[rows].cpu().numpy(), feats.mask[rows].cpu().numpy()
    sigma = fit.sigma[g_idx].cpu().numpy()
    out = {}
    for j, row in enumerate(rows.tolist()):
        early = mask[j] & (t[j] < share * _planned_end(hist[row]))
        n = int(early.sum())
        if n < 2 * MIN_POINTS:
            out[row] = False
            continue
        noise = sigma[j] / np.sqrt(n / 5)  # the chunk means' noise
        out[row] = _bias(r[j][early]) > max(EARLY_MISFIT * noise, 1e-3)
    return out


def _bias(diff: np.ndarray, chunks: int = 5) -> float:
    """Mean absolute bias over consecutive chunks: per-point noise averages out, drift does not."""
    return float(np.mean([abs(c.mean()) for c in np.array_split(diff, min(chunks, len(diff)))]))


def _prefer_simple(scores: np.ndarray) -> int:
    """Index of the law to use: a law with more parameters must forecast the held-back data
    clearly better (40 % less error) than the simpler ones: a short tail is a noisy judge, and the
    siblings' part of the score is in-sample, which favours the richer law. On Luo's smooth curves
    the extra parameters rarely paid off; on the noisy PKU curves multi-power scored about 0.55x
    momentum in every group and forecast better (docs/benchmarks.md)."""
    best = 0
    for c in range(1, len(scores)):
        if scores[c] < SIMPLER_MARGIN * scores[best]:
            best = c
    return best
