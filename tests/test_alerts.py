"""Alert rules on synthetic curves: each states a number, fires when it should and only then."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from forecaster.alerts import (
    ANNEAL_NOW, DIVERGENCE, ETA_TO_TARGET, TARGET_UNREACHABLE, WILL_NOT_BEAT_BEST, AlertSettings,
    GroupContext, evaluate_alerts, group_context, in_constant_phase,
)
from forecaster.calibration import prob_final_below
from forecaster.histories import RunForecast, RunHistory


def _forecast(run: str, steps, p50, spread: float = 0.02, samples: bool = False) -> RunForecast:
    steps = np.asarray(steps)
    p50 = np.asarray(p50, dtype=float)
    fs = None
    if samples:
        fs = p50[-1] * np.exp(np.random.default_rng(0).normal(0, spread / 1.2816, 4000))
    return RunForecast(run, "g", steps, np.full(len(steps), np.nan), p50, p50 * np.exp(-spread),
                       p50 * np.exp(spread), law="pow3", final_samples=fs)


def _run(run: str, values, start: int = 1) -> RunHistory:
    v = np.asarray(values, dtype=float)
    return RunHistory(run, np.arange(start, start + len(v)), v, group="g")


def _alert(alerts, rule):
    found = [a for a in alerts if a.rule == rule]
    return found[0] if found else None


# -- divergence ------------------------------------------------------------------------------
def test_divergence_flags_nan_and_names_the_first_step():
    h = _run("r", [3.0, 2.5, 2.2, np.nan, np.inf, 2.0])
    a = _alert(evaluate_alerts(h, None, None), DIVERGENCE)
    assert a.firing and a.state == "nonfinite" and a.value == 4.0 and a.severity == "critical"


def test_divergence_sees_rows_a_reader_dropped():
    h = _run("r", [3.0, 2.5, 2.2, 2.0])
    h.meta["nonfinite_steps"] = [7, 9]
    a = _alert(evaluate_alerts(h, None, None), DIVERGENCE)
    assert a.firing and a.value == 7.0


def test_spike_that_stays_up_fires_and_one_that_recovers_does_not():
    base = list(3.0 * np.arange(1, 21) ** -0.3)
    stuck = _run("stuck", base + [4.0, 4.2, 4.1])
    back = _run("back", base + [4.0, base[-1] * 0.99, base[-1] * 0.98])
    smooth = _run("smooth", base)
    a = _alert(evaluate_alerts(stuck, None, None), DIVERGENCE)
    assert a.firing and a.state == "spike" and a.value > 1.3
    for h in (back, smooth):
        a = _alert(evaluate_alerts(h, None, None), DIVERGENCE)
        assert not a.firing and a.state == "ok" and a.value < 1.05


# -- will-not-beat-best ----------------------------------------------------------------------
@pytest.mark.parametrize("samples", [False, True])
def test_will_not_beat_best_states_a_probability(samples):
    h = _run("r", np.linspace(3.0, 2.6, 8))
    ctx = GroupContext(best_final=2.0, best_run="best")
    hopeless = _forecast("r", [9, 10, 20], [2.5, 2.45, 2.4], samples=samples)
    close = _forecast("r", [9, 10, 20], [2.3, 2.1, 2.0], samples=samples)
    a = _alert(evaluate_alerts(h, hopeless, ctx), WILL_NOT_BEAT_BEST)
    assert a.firing and a.value < 0.01 and "best" in a.message
    b = _alert(evaluate_alerts(h, close, ctx), WILL_NOT_BEAT_BEST)
    assert not b.firing and 0.3 < b.value < 0.7  # p50 at the bar: about even odds


def test_will_not_beat_best_waits_for_min_points_and_a_finished_best():
    fc = _forecast("r", [4, 20], [2.5, 2.4])
    short = _run("r", [3.0, 2.8, 2.7])
    assert _alert(evaluate_alerts(short, fc, GroupContext(2.0, "b")), WILL_NOT_BEAT_BEST) is None
    longer = _run("r", np.linspace(3, 2.6, 6))
    assert _alert(evaluate_alerts(longer, fc, GroupContext()), WILL_NOT_BEAT_BEST) is None
    # the best run itself is never told it will not beat itself
    assert _alert(evaluate_alerts(longer, fc, GroupContext(2.0, "r")), WILL_NOT_BEAT_BEST) is None


def test_residuals_widen_an_overconfident_band():
    fc = _forecast("r", [20], [2.4], spread=0.01)
    raw = prob_final_below(fc, 2.3)
    # earlier forecasts of this group were off by up to 8 band-widths: the tail is real
    wide = prob_final_below(fc, 2.3, residuals=np.array([-8.0, -4, -1, 0, 1, 3, 6]))
    assert raw < 1e-6 < 0.05 < wide


def test_group_context_picks_the_lowest_finished_run():
    hs = [_run("a", [3, 2.5, 2.2]), _run("b", [3, 2.4, 2.1]), _run("c", [3, 2.0, 1.5])]
    ctx = group_context(hs, finished={"a", "b"})
    assert ctx["g"].best_run == "b" and ctx["g"].best_final == pytest.approx(2.1)


# -- target rules ----------------------------------------------------------------------------
def test_target_unreachable_and_eta():
    h = _run("r", np.linspace(3.0, 2.6, 8))
    steps = np.arange(9, 31)
    p50 = np.linspace(2.55, 2.1, len(steps))
    fc = _forecast("r", steps, p50)
    far = AlertSettings(target=1.5)
    a = _alert(evaluate_alerts(h, fc, None, far), TARGET_UNREACHABLE)
    assert a.firing and a.value < 0.01 and "30" in a.message
    near = AlertSettings(target=2.3)
    a = _alert(evaluate_alerts(h, fc, None, near), TARGET_UNREACHABLE)
    assert not a.firing and a.value > 0.9
    eta = _alert(evaluate_alerts(h, fc, None, near), ETA_TO_TARGET)
    expected = int(steps[np.argmax(p50 <= 2.3)])
    assert eta.state == "eta" and eta.value == expected and not eta.firing
    assert eta.details["eta_p10"] <= expected <= (eta.details["eta_p90"] or 10**9)
    beyond = _alert(evaluate_alerts(h, fc, None, AlertSettings(target=2.0)), ETA_TO_TARGET)
    assert beyond.state == "beyond_plan" and beyond.value is None
    done = _alert(evaluate_alerts(h, fc, None, AlertSettings(target=2.8)), ETA_TO_TARGET)
    assert done.state == "reached" and done.value == 5.0  # linspace(3, 2.6, 8)[4] = 2.77


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError):
        AlertSettings(rules=("nope",))


# -- the LR-aware case: a constant-LR run that only wins after its cooldown ------------------
PEAK = 3e-4


def _lr(kind: str, total: int, decay_start: int | None = None) -> np.ndarray:
    s = np.arange(total + 1, dtype=float)
    if kind == "cosine":
        return PEAK * 0.5 * (1 + np.cos(np.pi * s / total))
    lr = np.full_like(s, PEAK)
    if kind == "wsd":
        d = s >= decay_start
        lr[d] = PEAK * (total - s[d]) / (total - decay_start)
    return lr


def _momentum_curve(lr: np.ndarray) -> np.ndarray:
    """Tissue et al.'s momentum law: L0 + A*S1^-alpha - C*S2 (docs/laws.md §1.1, momentum law)."""
    s1 = np.cumsum(lr) / PEAK / 1000
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    s2 = np.cumsum(lfilter([1.0], [1.0, -0.999], d))
    return 2.0 + 1.5 * np.maximum(s1, 1e-3) ** -0.4 - 1.5 * s2


def _sibling(name, kind, total, decay_start=None, cut=None, seed=0):
    lr = _lr(kind, total, decay_start)
    truth = _momentum_curve(lr)
    steps = np.arange(100, total + 1, 100)
    vals = truth[steps] * np.exp(np.random.default_rng(seed).normal(0, 0.003, len(steps)))
    lrs = np.arange(0, total + 1, 100)
    keep = steps <= (cut or total)
    h = RunHistory(name, steps[keep], vals[keep], group="g", lr_steps=lrs, lr_values=lr[lrs],
                   horizon=steps[~keep] if cut else None)
    return h, float(truth[total])


def test_constant_lr_run_that_wins_after_cooldown_is_not_flagged():
    from forecaster.forecast import Forecaster

    cos, _ = _sibling("cos", "cosine", 10000, seed=1)
    wsd, _ = _sibling("wsd10k", "wsd", 10000, 8000, seed=2)
    live, live_final = _sibling("wsd14k", "wsd", 14000, 12000, cut=7000, seed=3)
    flat, flat_final = _sibling("const10k", "constant", 10000, cut=7000, seed=4)
    ctx = group_context([cos, wsd])["g"]
    # the premise: at the cut the live run looks worse than the cosine run did at the same step,
    # yet after its cooldown it ends better than the best finished run
    at = np.searchsorted(cos.steps, 7000)
    assert live.values[-1] > cos.values[at] and live_final < ctx.best_final < flat_final
    assert in_constant_phase(live) and not in_constant_phase(cos)
    fcs = Forecaster(seed=0).fit([cos, wsd, live, flat]).predict()
    a = _alert(evaluate_alerts(live, fcs[2], ctx), WILL_NOT_BEAT_BEST)
    assert a is not None and not a.firing and a.value >= 0.05
    b = _alert(evaluate_alerts(flat, fcs[3], ctx), WILL_NOT_BEAT_BEST)
    assert b is not None and b.firing and b.value < 0.05


def test_anneal_hook_reports_a_number_for_constant_phase_runs_only():
    live, _ = _sibling("wsd14k", "wsd", 14000, 12000, cut=7000)
    cos, _ = _sibling("cos", "cosine", 10000)
    seen = []

    def hook(h):
        seen.append(h.run)
        return _forecast(h.run, [8000], [2.4])

    s = AlertSettings(anneal_hook=hook)
    a = _alert(evaluate_alerts(live, None, None, s), ANNEAL_NOW)
    assert a.value == pytest.approx(2.4) and "2.4" in a.message and not a.firing
    assert _alert(evaluate_alerts(cos, None, None, s), ANNEAL_NOW) is None and seen == ["wsd14k"]


def test_a_new_rule_is_one_registered_class(monkeypatch):
    from forecaster import alerts

    monkeypatch.setattr(alerts, "_REGISTRY", dict(alerts._REGISTRY))

    class LongRun(alerts.AlertRule):
        name = "long_run"

        def evaluate(self, history, forecast, ctx):
            return alerts.Alert(self.name, history.run, history.group, len(history.values) > 3, "long", None, "long")

    assert alerts.rule_names()[-1] == "long_run" and "long_run" in AlertSettings().rules
    a = _alert(evaluate_alerts(_run("r", [3.0, 2.0, 1.0, 0.5]), None, None, AlertSettings(rules=("long_run",))),
               "long_run")
    assert a.firing and a.state == "long"
    with pytest.raises(ValueError, match=r"unknown alert rules \['nope'\]; known: will_not_beat_best, .*long_run"):
        AlertSettings(rules=("nope",))
