"""The forecaster estimator: histories in, fitted laws per group, forecasts with bands out."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forecaster import bands, lawchoice, laws, selfcal
from forecaster.batch import WARMUP_MODES, build_features
from forecaster.device import DTYPE, pick_device
from forecaster.eligibility import skip_reasons
from forecaster.errors import InputError, NotFittedError, one_line
from forecaster.fit import GroupFit, fit_groups
from forecaster.histories import BAND_LEVELS, RunForecast, RunHistory, level_key
from forecaster.lawchoice import HOLDOUT, Plan
from forecaster.own_decay import check_own_decays
from forecaster.params import Params
from forecaster.phases import phase
from forecaster.results import Diagnostics, ForecastSet
from forecaster.transients import SKIP_EARLY, fit_points, misfits_early

if TYPE_CHECKING:  # pragma: no cover
    from forecaster.inputs import HistorySource
    from forecaster.schedules import Schedule

log = logging.getLogger(__name__)


class Forecaster(Params):
    """Fit loss-curve laws to runs (jointly per group) and forecast each run's horizon.

    Settings are constructor arguments (scikit-learn style: `get_params`, `set_params`,
    `forecaster.clone`); `fit` checks them and learns, `predict` answers. ``law="auto"`` picks, per
    group, the candidate law that best forecasts the held-back last ``holdout`` share of the runs
    being forecast, not the one with the smallest training error. ``follow_siblings`` carries over
    the deviations from the law that siblings share with a run step by step (the same data order;
    `shared_noise`), where they are measured to share them. ``quantiles`` are the levels reported
    besides the band (p10, p50, p90 are always computed). ``inflation``, ``extrapolation`` and
    ``misfit`` scale the band's terms (`bands`). ``selfcal`` scales each group's band by how wrong
    the same forecast was on its finished siblings cut at the same share (`selfcal`). ``init``
    warm-starts the fit: per run name, the law's parameters of a previous fit (`RunForecast.params`),
    from which a fit of grown histories takes a few steps instead of a dozen. Fitted attributes
    end in ``_``.
    """

    def __init__(
        self,
        law: str = "auto",
        *,
        device: str | None = None,
        seed: int = 0,
        quantiles: Sequence[float] = BAND_LEVELS,
        warmup: str = "linear",
        pool: float = 0.1,
        max_points: int = 512,
        holdout: float = HOLDOUT,
        samples: int = 100,
        skip_early: float = SKIP_EARLY,
        follow_siblings: bool = True,
        inflation: float = bands.INFLATION,
        extrapolation: float = bands.EXTRAPOLATION,
        misfit: float = bands.MISFIT,
        selfcal: bool = selfcal.ON_BY_DEFAULT,
        init: Mapping[str, Mapping[str, float]] | None = None,
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
        self.inflation = inflation
        self.extrapolation = extrapolation
        self.misfit = misfit
        self.selfcal = selfcal
        self.init = init

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, histories: HistorySource, metric: str = "loss") -> Forecaster:
        """Fit every group of `histories` (a list of `RunHistory`, or a pandas DataFrame or Arrow
        table with the columns of a history CSV, read for `metric`) in one batched program per
        candidate law. Bad settings or input raise `InputError`. Returns the estimator."""
        from forecaster.inputs import as_histories

        self.levels_ = self._check_settings()
        try:
            self.device_ = pick_device(self.device)
        except (RuntimeError, ValueError) as exc:
            raise InputError(one_line(exc)) from None
        self.histories_ = as_histories(histories, metric)
        with phase("plan"):
            self.skipped_ = skip_reasons(self.histories_, self.law)
            plans = lawchoice.plans(self.histories_, self.skipped_, self.law)
        self.choice_: dict[int, str] = {}
        self.fits_: dict[str, tuple[GroupFit, list[int]]] = {}
        self.validation_: dict[int, dict[str, float]] = {}
        self.law_finals_: dict[int, dict[str, float]] = {}  # each candidate's final, where contested
        self.selfcal_: dict[str, selfcal.GroupCalibration] = {}  # by group, set by predict with selfcal=True
        torch.manual_seed(self.seed)
        for plan in plans:
            with phase("law choice"):
                chosen = lawchoice.select(self, plan)
            for law_name in sorted(set(chosen.values())):
                grp_ids = [g for g, name in chosen.items() if name == law_name]
                for ids, fit, rows in self._fit_skipping_transients(law_name, plan, grp_ids):
                    key = f"{law_name}:{len(self.fits_)}"
                    self.fits_[key] = (fit, rows)
                    for g in ids:
                        for m in plan.groups[g]:
                            self.choice_[plan.rows[m]] = key
        return self

    def _check_settings(self) -> tuple[float, ...]:
        """Every setting checked (one line per problem found first); the quantile levels, sorted."""
        if self.law != "auto" and self.law not in laws.available():
            raise InputError(f"law {self.law!r}: expected 'auto' or one of {', '.join(laws.available())}")
        if self.warmup not in WARMUP_MODES:
            raise InputError(f"warmup {self.warmup!r}: expected one of {', '.join(WARMUP_MODES)}")
        try:
            levels = tuple(sorted({level_key(q) for q in self.quantiles}))
        except (TypeError, ValueError):
            raise InputError(f"quantiles {self.quantiles!r}: expected a sequence of levels in (0, 1)") from None
        if not levels or not all(0.0 < q < 1.0 for q in levels):
            raise InputError(f"quantiles {self.quantiles!r}: expected a sequence of levels in (0, 1)")
        for name, ok, what in (
            ("seed", _is_int(self.seed), "an integer"),
            ("pool", _is_number(self.pool) and self.pool >= 0, "a number >= 0"),
            ("max_points", _is_int(self.max_points) and self.max_points >= 2, "an integer >= 2"),
            ("holdout", _is_number(self.holdout) and 0 < self.holdout < 1, "a share in (0, 1)"),
            ("samples", _is_int(self.samples) and self.samples >= 2, "an integer >= 2"),
            ("skip_early", _is_number(self.skip_early) and 0 <= self.skip_early < 1, "a share in [0, 1)"),
            ("follow_siblings", isinstance(self.follow_siblings, (bool, np.bool_)), "True or False"),
            ("selfcal", isinstance(self.selfcal, (bool, np.bool_)), "True or False"),
            ("inflation", _is_number(self.inflation) and self.inflation > 0, "a number > 0"),
            ("extrapolation", _is_number(self.extrapolation) and self.extrapolation >= 0, "a number >= 0"),
            ("misfit", _is_number(self.misfit) and self.misfit >= 0, "a number >= 0"),
            ("init", self.init is None or isinstance(self.init, Mapping), "None or a mapping of run names "
             "to parameter values"),
        ):
            if not ok:
                raise InputError(f"{name}={getattr(self, name)!r}: expected {what}")
        return levels

    def _fit_skipping_transients(self, law_name: str, plan: Plan, grp_ids: list[int]
                                 ) -> Iterator[tuple[list[int], GroupFit, list[int]]]:
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

    def _fit(self, law_name: str, plan: Plan, groups: list[list[int]], hist: list[RunHistory],
             skip: float | None = None, early: float = 0.0) -> tuple[GroupFit, list[int], dict[int, bool]]:
        """Fit one law to `groups` (member indices into plan.rows) of `hist`, leaving out each
        run's first `skip` share (default: `skip_early` for LR laws). With `early`, also says per
        run (row -> bool) whether the fit misses its points in that first share (`misfits_early`)."""
        with phase("fit setup"):
            rows = sorted({plan.rows[m] for g in groups for m in g})
            pos = {r: k for k, r in enumerate(rows)}
            law = laws.get(law_name)
            if skip is None:
                # LR laws describe training after its first transient (the loss falling from
                # ln(vocab)), which they misfit by several % and which would bend their fit
                skip = self.skip_early if law.needs_lr else 0.0
            # a law whose evaluation is costly (the multi-power double sum) is fitted on fewer points
            most = min(self.max_points, law.max_points or self.max_points)
            pts = [fit_points(hist[r], most, skip) for r in rows]
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
            fit = fit_groups(law, feats, y, members, pool=self.pool, init=self._init(law, [hist[r] for r in rows]))
            with phase("transient check"):
                flags = misfits_early(fit, feats, y, members, [hist[r] for r in rows], early) if early else {}
            return fit, rows, {rows[k]: v for k, v in flags.items()}

    def _init(self, law: laws.Law, hist: list[RunHistory]) -> torch.Tensor | None:
        """The warm start of each run from `init` ((R, p), NaN rows for runs without all of the
        law's parameters there), or None when no run has one."""
        if not self.init:
            return None
        rows = []
        for h in hist:
            given = self.init.get(h.run) or {}
            try:
                rows.append([float(given[n]) for n in law.params])
            except (KeyError, TypeError, ValueError):
                rows.append([math.nan] * len(law.params))
        out = torch.as_tensor(rows, dtype=DTYPE, device=self.device_)
        return out if bool(torch.isfinite(out).all(1).any()) else None

    # -- forecasting -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "fits_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(histories) first")

    def _forecasts(self) -> dict[int, RunForecast]:
        """Every fitted target's forecast, by history index."""
        done: dict[int, RunForecast] = {}
        for key, (fit, rows) in self.fits_.items():
            targets = [r for r in rows if self.choice_.get(r) == key]
            done.update(bands.forecast_fit(self, fit, rows, targets))
        return done

    def predict_schedules(self, run: int | str, candidates: list[Schedule]) -> list[RunForecast]:
        """The fitted run `run` (index into the fitted histories, or run id) forecast under each
        candidate schedule for the rest of its training, in one batched call (`whatif`)."""
        from forecaster import whatif

        i = self._row(run)
        return whatif.predict_variants(self, [(i, s) for s in candidates])

    def _row(self, run: int | str) -> int:
        """The index into the fitted histories of `run` (an index, or a run id); InputError if none."""
        self._check_fitted()
        i = run if isinstance(run, int) else next((k for k, h in enumerate(self.histories_) if h.run == run), None)
        if i is None or not 0 <= i < len(self.histories_):
            raise InputError(f"run {run!r} is not among the fitted histories")
        return i

    def predict(self) -> ForecastSet:
        """One forecast per fitted history, in order; skipped runs carry the reason."""
        self._check_fitted()
        done = self._forecasts()
        with phase("own-decay check"):
            flagged_by_fit = check_own_decays(self, done)
        for key, flagged in flagged_by_fit.items():
            fit, rows = self.fits_[key]
            done.update(bands.forecast_fit(self, fit, rows, sorted(flagged), unidentified=frozenset(flagged)))
        if self.selfcal:
            with phase("self-calibration"):
                done = selfcal.calibrate(self, done)
        out = []
        for i, h in enumerate(self.histories_):
            if i in self.skipped_:
                out.append(RunForecast.skip(h.run, h.group, self.skipped_[i], h.metric))
            else:
                out.append(done[i])
        return ForecastSet(out, self._diagnostics(out), self.levels_)

    def fit_predict(self, histories: HistorySource, metric: str = "loss") -> ForecastSet:
        """`fit(histories, metric)`, then `predict()`."""
        return self.fit(histories, metric).predict()

    def _diagnostics(self, forecasts: list[RunForecast]) -> list[Diagnostics]:
        """Per run: its law, and whether its group's fit converged and in how many iterations."""
        slot: dict[int, tuple[GroupFit, int]] = {}
        for key, (fit, rows) in self.fits_.items():
            mine = [(k, r) for k, r in enumerate(rows) if self.choice_.get(r) == key]
            for (k, r), (g, _) in zip(mine, fit.slots([k for k, _ in mine])):
                slot[r] = (fit, g)
        out = []
        for i, f in enumerate(forecasts):
            d = Diagnostics(f.run, f.law, notes=list(f.notes), skipped=f.skipped)
            if i in slot:
                fit, g = slot[i]
                d.law = d.law or fit.law.name
                d.converged, d.iterations = bool(fit.converged[g]), int(fit.iterations[g])
            out.append(d)
        return out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))
