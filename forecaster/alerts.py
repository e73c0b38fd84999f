"""Alert rules on one run: each states a probability or a number, not only a yes/no.

Rules are registered `AlertRule` classes (a new rule is one subclass with a `name`): pure functions
of a run's history, its forecast, what the group already knows (the best finished run, optional
calibration residuals) and the settings. The metric is lower-is-better and positive (transform
accuracies to errors before). `evaluate_alerts` runs every enabled rule and returns one `Alert` per
rule that could be judged, firing or not, so a caller that persists states (`forecaster.notify`)
can see a rule go back to normal as well as fire.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from forecaster.calibration import prob_final_below
from forecaster.histories import RunForecast, RunHistory

# every rule by name, in the order they are defined (the order `evaluate_alerts` reports them in)
_REGISTRY: dict[str, type[AlertRule]] = {}


@dataclass(frozen=True)
class Alert:
    """One rule's verdict on one run: the state, the number behind it and a one-line message."""

    rule: str
    run: str
    group: str
    firing: bool
    state: str  # short machine state, e.g. "firing", "ok", "nonfinite", "spike"
    value: float | None  # the probability or number the state rests on
    message: str
    severity: str = "warning"  # "info" | "warning" | "critical"
    identity: str = ""  # what the verdict refers to (best run, target): a new one re-arms the alert
    details: dict[str, float | str | None] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Short hash of rule, state and identity: what de-duplication compares across syncs."""
        raw = f"{self.rule}|{self.state}|{self.identity}".encode()
        return hashlib.sha256(raw).hexdigest()[:10]

    def to_dict(self) -> dict:
        """JSON-ready form (webhook payloads, `--json` output)."""
        return {"rule": self.rule, "run": self.run, "group": self.group, "firing": self.firing,
                "state": self.state, "value": self.value, "message": self.message,
                "severity": self.severity, "details": dict(self.details)}


@dataclass
class GroupContext:
    """What the run's group already knows: its best finished run and forecast-error residuals.

    ``residuals`` are standardised log errors (log truth - log p50) / log-scale of earlier
    forecasts of finished siblings made at a comparable point; when given, they replace the
    forecast's own band shape (an empirical, group-calibrated predictive, see `forecaster.calibration`).
    """

    best_final: float | None = None
    best_run: str | None = None
    residuals: np.ndarray | None = None


@dataclass
class AlertSettings:
    """Thresholds of every rule; the defaults follow docs/laws.md §3, stopping runs."""

    min_points: int = 5  # observations before any forecast-based rule may fire
    beat_threshold: float = 0.05  # will-not-beat-best fires when P(final beats best) < this
    beat_margin: float = 0.0  # "beats" means final < best * (1 - margin)
    spike_factor: float = 1.3  # a value this many times the best so far is a spike
    spike_window: int = 3  # ...that has not recovered when the last this-many points all stay up
    target: float | None = None  # target metric value for the target rules
    reach_threshold: float = 0.05  # target-unreachable fires when P(final <= target) < this
    eta_quantile: float = 0.5  # which forecast quantile dates the ETA (p50)
    # hook for "annealing now would reach X": maps a constant-phase run to the forecast of that
    # run cooled down from its last step (the sync sets it from `advisor.cooldown_now`); None disables
    anneal_hook: Callable[[RunHistory], RunForecast | None] | None = None
    anneal_target: float | None = None  # anneal_now fires once cooling down now reaches it (default: target)
    # every registered rule; resolved per instance, so rules defined below (or later) are included
    rules: tuple[str, ...] = field(default_factory=lambda: rule_names())

    def __post_init__(self) -> None:
        unknown = set(self.rules) - set(_REGISTRY)
        if unknown:
            raise ValueError(f"unknown alert rules {sorted(unknown)}; known: {', '.join(rule_names())}")


# -- rules -----------------------------------------------------------------------------------
def rule_names() -> tuple[str, ...]:
    """Every registered rule's name, in definition order."""
    return tuple(_REGISTRY)


class AlertRule(abc.ABC):
    """One alert rule: a `name` (its key in the config, the tags and the registry) and a verdict."""

    name: ClassVar[str]

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a class without its own name is a shared base, not a rule
            if cls.name in _REGISTRY:
                raise ValueError(f"alert rule {cls.name!r} is defined twice")
            _REGISTRY[cls.name] = cls

    @abc.abstractmethod
    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        """This rule's verdict on one run, or None when it cannot judge the run (yet)."""


def _usable(history: RunHistory, forecast: RunForecast | None, settings: AlertSettings) -> bool:
    return (forecast is not None and forecast.skipped is None and len(forecast.p50) > 0
            and int(np.isfinite(history.values).sum()) >= settings.min_points)


class WillNotBeatBest(AlertRule):
    """P(final better than the group's best finished run); fires below `beat_threshold`."""

    name = "will_not_beat_best"

    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        settings = self.settings
        if not _usable(history, forecast, settings) or ctx.best_final is None or ctx.best_run == history.run:
            return None
        bar = ctx.best_final * (1.0 - settings.beat_margin)
        p = prob_final_below(forecast, bar, ctx.residuals)
        if not np.isfinite(p):
            return None
        firing = p < settings.beat_threshold
        msg = (f"P(final {history.metric} beats best run {ctx.best_run} at {ctx.best_final:.4g}) = {p:.1%}"
               + (f" < {settings.beat_threshold:.0%}" if firing else ""))
        return Alert(self.name, history.run, history.group, firing, "firing" if firing else "ok", p,
                     msg, "warning", identity=f"{ctx.best_run}:{ctx.best_final:.6g}",
                     details={"best_run": ctx.best_run, "best_final": ctx.best_final,
                              "forecast_final": forecast.final, "threshold": settings.beat_threshold})


class Divergence(AlertRule):
    """NaN/inf values, or a rise above `spike_factor` x the best so far that has not come back down.

    The value is the step of the first non-finite point, or the ratio of the latest value to the
    best before the spike. Readers that drop non-finite rows may list their steps in
    ``history.meta["nonfinite_steps"]`` so the rule still sees them.
    """

    name = "divergence"

    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        v = np.asarray(history.values, dtype=float)
        steps = np.asarray(history.steps)
        bad_steps = list(steps[~np.isfinite(v)]) + list(history.meta.get("nonfinite_steps", []) or [])
        if bad_steps:
            first = int(min(bad_steps))
            return Alert(self.name, history.run, history.group, True, "nonfinite", float(first),
                         f"{history.metric} is NaN/inf from step {first} ({len(bad_steps)} points)", "critical",
                         details={"first_step": first, "count": len(bad_steps)})
        k = self.settings.spike_window
        if len(v) < k + 2:
            return None
        best_before = np.minimum.accumulate(v)[:-k][-1]  # best value before the last k points
        ratio = float(v[-k:].min() / best_before) if best_before > 0 else float("inf")
        firing = ratio > self.settings.spike_factor
        # a spike that came back down leaves the ratio near 1: not firing
        msg = (f"{history.metric} has stayed {ratio:.2f}x above its best ({best_before:.4g}) for {k} points"
               if firing else f"{history.metric} within {ratio:.2f}x of its best")
        return Alert(self.name, history.run, history.group, firing, "spike" if firing else "ok", ratio, msg,
                     "critical" if firing else "info", details={"best_before": float(best_before), "window": k})


class TargetUnreachable(AlertRule):
    """P(final <= target within the planned steps); fires below `reach_threshold`."""

    name = "target_unreachable"

    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        settings = self.settings
        if settings.target is None or not _usable(history, forecast, settings):
            return None
        p = 1.0 if np.nanmin(history.values) <= settings.target else prob_final_below(forecast, settings.target,
                                                                                      ctx.residuals)
        firing = p < settings.reach_threshold
        end = int(forecast.steps[-1])
        msg = f"P({history.metric} <= {settings.target:g} by planned step {end}) = {p:.1%}"
        return Alert(self.name, history.run, history.group, firing, "firing" if firing else "ok", p, msg,
                     "warning", identity=f"{settings.target:g}@{end}",
                     details={"target": settings.target, "planned_step": end, "threshold": settings.reach_threshold})


class EtaToTarget(AlertRule):
    """First step at which the forecast reaches the target (p50; p10/p90 give the range); info only."""

    name = "eta_to_target"

    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        t = self.settings.target
        if t is None or forecast is None or forecast.skipped is not None or not len(forecast.p50):
            return None
        if len(history.values) and np.nanmin(history.values) <= t:
            step = int(history.steps[int(np.argmax(history.values <= t))])
            return Alert(self.name, history.run, history.group, False, "reached", float(step),
                         f"{history.metric} reached {t:g} at step {step}", "info", identity=f"{t:g}",
                         details={"target": t, "step": step})

        def first(curve: np.ndarray) -> int | None:
            hit = np.nonzero(curve <= t)[0]
            return int(forecast.steps[hit[0]]) if len(hit) else None

        mid, early, late = first(forecast.p50), first(forecast.p10), first(forecast.p90)
        if mid is None:
            state, msg = "beyond_plan", f"{history.metric} {t:g} not reached by step {int(forecast.steps[-1])} (p50)"
        else:
            state, msg = "eta", f"{history.metric} {t:g} expected at step {mid}" + (
                f" (p10-p90: {early}-{late if late is not None else 'beyond plan'})" if early is not None else "")
        return Alert(self.name, history.run, history.group, False, state,
                     float(mid) if mid is not None else None, msg, "info", identity=f"{t:g}",
                     details={"target": t, "eta_p50": mid, "eta_p10": early, "eta_p90": late})


def in_constant_phase(history: RunHistory, rel_tol: float = 1e-3, window: int = 5) -> bool:
    """True when the LR logged over the run's last `window` LR points up to its last step is flat."""
    if history.lr_steps is None or len(history.lr_steps) == 0:
        return False
    past = history.lr_values[history.lr_steps <= history.last_step][-window:]
    return len(past) >= 2 and float(np.ptp(past)) <= rel_tol * float(np.max(np.abs(past)))


class AnnealNow(AlertRule):
    """'Cooling down now would reach X' for a run at constant LR (`settings.anneal_hook` gives that
    forecast). Fires once it reaches `anneal_target` (else `target`): at the median, or, where the
    annealing response is not identified, only when even the band's no-gain edge (p90) reaches it."""

    name = "anneal_now"

    def evaluate(self, history: RunHistory, forecast: RunForecast | None, ctx: GroupContext) -> Alert | None:
        if self.settings.anneal_hook is None or not in_constant_phase(history):
            return None
        fc = self.settings.anneal_hook(history)
        if fc is None or fc.skipped is not None or not len(fc.p50):
            return None
        lo, hi = fc.final_interval
        length = int(fc.steps[-1]) - history.last_step
        unidentified = fc.unidentified is not None
        what = (f"cooling down now ({length:,} steps) would reach {history.metric} {fc.final:.4g} "
                f"(p10-p90 {lo:.4g}-{hi:.4g})" + ("; annealing response not identified" if unidentified else ""))
        target = self.settings.anneal_target if self.settings.anneal_target is not None else self.settings.target
        details: dict[str, float | str | None] = {"p10": lo, "p90": hi, "from_step": history.last_step,
                                                  "length": length, "target": target}
        if target is None:
            return Alert(self.name, history.run, history.group, False, "constant_phase", fc.final, what, "info",
                         details=details)
        reached = (hi if unidentified else fc.final) <= target
        return Alert(self.name, history.run, history.group, reached, "firing" if reached else "ok", fc.final,
                     f"{what}: {'at or below' if reached else 'above'} the target {target:g}", "info",
                     identity=f"{target:g}", details=details)


WILL_NOT_BEAT_BEST = WillNotBeatBest.name
DIVERGENCE = Divergence.name
TARGET_UNREACHABLE = TargetUnreachable.name
ETA_TO_TARGET = EtaToTarget.name
ANNEAL_NOW = AnnealNow.name
RULES = rule_names()  # the rules defined here; `rule_names()` also sees rules registered later


def evaluate_alerts(history: RunHistory, forecast: RunForecast | None, group_context: GroupContext | None,
                    settings: AlertSettings | None = None) -> list[Alert]:
    """Every enabled rule's verdict on one run (rules that cannot judge it yet are left out)."""
    settings = settings or AlertSettings()
    ctx = group_context or GroupContext()
    out = [_REGISTRY[rule](settings).evaluate(history, forecast, ctx) for rule in settings.rules]
    return [a for a in out if a is not None]


def group_context(histories: list[RunHistory], finished: set[str] | None = None) -> dict[str, GroupContext]:
    """Per group, the best finished run (lowest last value) among `finished` runs (all when None)."""
    best: dict[str, GroupContext] = {}
    for h in histories:
        if not len(h.values) or (finished is not None and h.run not in finished):
            continue
        last = float(h.values[-1])
        if not np.isfinite(last):
            continue
        cur = best.get(h.group)
        if cur is None or last < cur.best_final:
            best[h.group] = GroupContext(best_final=last, best_run=h.run)
    return best
