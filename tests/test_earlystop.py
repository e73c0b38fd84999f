"""Early-stop replay: checkpoints, scores, Optuna baselines through their real API, the CLI's JSON."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from forecaster.earlystop import (
    EarlyStopSettings, MethodResult, _groups, checkpoints, replay_forecast_rule, replay_optuna,
    replay_patience, run_early_stop, score,
)
from forecaster.histories import RunForecast, RunHistory


def _curves(n_runs: int = 12, n_points: int = 12, seed: int = 0) -> list[RunHistory]:
    """pow3 curves c + a*t^-alpha with run-to-run spread in the floor c, small noise, one group."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n_points + 1)
    out = []
    for i in range(n_runs):
        c = 0.2 + 0.3 * rng.random()
        v = (c + 0.5 * t ** -0.7) * np.exp(rng.normal(0, 0.004, n_points))
        out.append(RunHistory(f"r{i:02d}", t, v, group="g", metric="error"))
    return out


def test_checkpoints_are_geometric_and_never_the_last_point():
    s = EarlyStopSettings(min_points=5, first_share=0.1, ratio=1.4)
    ks = checkpoints(20, s)
    assert ks[0] == 5 and ks[-1] < 20 and all(b > a for a, b in zip(ks, ks[1:]))
    assert len(checkpoints(200, s)) < 12  # geometric, not every point
    assert checkpoints(5, s) == []


def test_scores_follow_from_the_decisions():
    hs = _curves(6, 10)
    groups, _ = _groups(hs)
    runs = groups["g"]
    order = np.argsort([r.outcome for r in runs])
    best, second, worst = (runs[i].history.run for i in (order[0], order[1], order[-1]))
    m = MethodResult("x", {worst: 3})
    r = score(m, groups, margin=0.01)
    full = sum(r_.cost for r_ in runs)
    assert r["compute_saved"] == pytest.approx((10 - 3) / full)
    assert r["regret"] == 0.0 and r["false_stop_rate"] == 0.0 and not r["best_run_stopped"]
    r = score(MethodResult("x", {best: 5}), groups, margin=0.01)
    assert r["best_run_stopped"] and r["false_stop_rate"] == 1.0
    second_outcome = runs[order[1]].outcome
    assert r["regret"] == pytest.approx(second_outcome / runs[order[0]].outcome - 1)


def test_forecast_rule_stops_hopeless_runs_only_after_calibration():
    """Hand-made exact forecasts: the rule stops runs whose final is far worse, never the best."""
    hs = _curves(40, 12, seed=1)
    groups, _ = _groups(hs)
    s = EarlyStopSettings(min_points=4, min_calibration=3)
    grid = {r.history.run: checkpoints(len(r.steps), s) for r in groups["g"]}
    fcs = {}
    for r in groups["g"]:
        for k in grid[r.history.run]:
            p50 = np.array([r.outcome * 1.01])  # slightly biased: calibration must absorb it
            fcs[(r.history.run, k)] = RunForecast(r.history.run, "g", r.steps[-1:], np.full(1, np.nan), p50,
                                                  p50 * 0.97, p50 * 1.03, law="pow3")
    m = replay_forecast_rule(groups, grid, fcs, s)
    runs = groups["g"]
    res = score(m, groups, margin=0.01)
    assert not res["best_run_stopped"] and res["regret"] == 0.0 and res["false_stop_rate"] == 0.0
    assert res["stopped"] >= 3 and res["compute_saved"] > 0.2
    # conformal: P >= 1/(n+1) with n finished runs, so nothing is stopped before 19 have finished
    assert not any(r.history.run in m.stops for r in runs[:19])
    assert m.stop_probs and all(p < s.delta for p, _ in m.stop_probs)
    assert res["calibration"]["interval90_coverage"] == 1.0


def test_optuna_pruners_and_patience_replay_and_prune_a_late_bloomer():
    """Equal-step comparisons prune a run that is worse early and best at the end (docs/laws.md §3)."""
    t = np.arange(1, 41)
    hs = []
    for i in range(8):
        hs.append(RunHistory(f"steady{i}", t, (0.30 + 0.02 * i) + 0.5 * t ** -0.8, group="g"))
    # a step-decay run: flat and worse until step 30, then drops below everybody
    late = np.where(t < 30, 0.6 + 0.001 * (t % 2), 0.22 + 0.01 * (40 - t) / 10)
    hs.append(RunHistory("late", t, late, group="g"))
    groups, _ = _groups(hs)
    s = EarlyStopSettings()
    med = replay_optuna("median", groups, s)
    assert "late" in med.stops and score(med, groups, 0.01)["best_run_stopped"]
    for name in ("successive_halving", "hyperband"):
        m = replay_optuna(name, groups, s)
        assert isinstance(m.stops, dict) and all(1 <= k < 40 for k in m.stops.values())
    pat = replay_patience(groups, EarlyStopSettings(patience=3))
    assert "late" in pat.stops  # flat for many checks before its drop


def test_replay_refuses_a_non_positive_metric():
    from forecaster.errors import InputError

    with pytest.raises(InputError, match="lower-is-better"):
        run_early_stop([RunHistory("a", np.arange(10), np.linspace(-1, 0.5, 10), group="g")], baselines=())


def test_cli_early_stop_json(tmp_path):
    from forecaster.cli import main

    hs = _curves(10, 12, seed=2)
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "error"])
        for h in hs:
            for s_, v in zip(h.steps, h.values):
                w.writerow([h.run, h.group, int(s_), float(v)])
    res = CliRunner().invoke(main, ["backtest", "--early-stop", "--input", str(path), "--metric", "error", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("compute_saved", "regret", "false_stop_rate", "best_run_stopped", "calibration"):
        assert key in out
        for b in ("median", "successive_halving", "hyperband", "patience"):
            assert key in out["baselines"][b]
    assert 0.0 <= out["compute_saved"] < 1.0 and out["runs"] == 10
    # batched: one Forecaster call per checkpoint index and replay round, never one per run
    assert out["forecaster_calls"] < out["forecasts"] or out["forecasts"] <= len(out["checkpoints"])
    bad = CliRunner().invoke(main, ["backtest", "--early-stop", "--input", str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_local_calibration_sees_late_bloomers_among_similar_forecasts() -> None:
    from types import SimpleNamespace

    from forecaster.earlystop import local_prob_below, local_quantiles

    rng = np.random.default_rng(0)
    good = np.log(0.5) + 0.01 * rng.standard_normal(100)  # forecast 0.5, ended there
    bad_f = np.log(1.0) + 0.01 * rng.standard_normal(50)  # forecast 1.0: 10 ended at 0.5 anyway
    bad_y = np.where(np.arange(50) < 10, np.log(0.5), bad_f)
    cal = np.c_[np.r_[good, bad_f], np.r_[good + 0.01 * rng.standard_normal(100), bad_y]]
    f = SimpleNamespace(final=1.0)
    local = local_prob_below(f, 0.55, cal, 50)
    pooled = local_prob_below(f, 0.55, cal, len(cal))  # all siblings: their errors are mostly ~0
    assert 0.12 < local < 0.3 and pooled < 0.1
    lo, hi = local_quantiles(f, [0.05, 0.95], cal, 50)
    assert lo < 0.6 and 0.95 < hi < 1.1


def test_context_is_the_most_recent_finished_siblings_and_the_replay_settles() -> None:
    from forecaster.earlystop import contexts, run_early_stop

    rng = np.random.default_rng(0)
    steps = np.arange(1, 13)
    hs = [RunHistory(f"r{i}", steps, (0.3 + 0.4 * rng.random()) * (1 + 2.0 * steps ** -0.7), group="g")
          for i in range(8)]
    groups, _ = _groups(hs)
    ctx = contexts(groups, {"r2": 3}, cap=3)
    assert ctx["r0"] == () and ctx["r3"] == ("r0", "r1") and ctx["r6"] == ("r3", "r4", "r5")
    res = run_early_stop(hs, EarlyStopSettings(min_points=4, min_calibration=3, context=3), baselines=())
    assert res["settings"]["context"] == 3 and res["context_rounds"] >= 1 and res["forecasts"] > 0


def test_interval_score_rewards_narrow_intervals_and_charges_misses_by_distance() -> None:
    from types import SimpleNamespace

    from forecaster.earlystop import interval_score, local_quantiles

    rng = np.random.default_rng(3)
    f = SimpleNamespace(final=1.0)
    tight = np.c_[np.zeros(40), 0.02 * rng.standard_normal(40)]  # (log forecast, log outcome)
    wide = np.c_[np.zeros(40), 0.2 * rng.standard_normal(40)]
    lo, hi = np.log(local_quantiles(f, [0.05, 0.95], tight, 50))
    assert interval_score(f, 1.0, tight, 50) == pytest.approx(hi - lo)  # a hit costs its width
    assert interval_score(f, 1.0, tight, 50) < interval_score(f, 1.0, wide, 50)
    # a miss costs 2/alpha = 20 times its distance in log on top of the width
    assert interval_score(f, float(np.exp(hi + 0.1)), tight, 50) == pytest.approx(hi - lo + 2.0)


def test_replay_uses_the_law_whose_calibrated_intervals_scored_best_on_finished_runs() -> None:
    """Two candidate laws per checkpoint: one forecasts the final within 1 %, one within 30 %. The
    replay starts with the first (the default while nothing is scored) and switches to the sharp
    one once finished runs have scored both, which also lets it stop more."""
    from forecaster.earlystop import score_from

    hs = _curves(80, 12, seed=4)
    groups, _ = _groups(hs)
    s = EarlyStopSettings(min_points=4, min_calibration=3)
    grid = {r.history.run: checkpoints(len(r.steps), s) for r in groups["g"]}
    rng = np.random.default_rng(5)

    def fc(r, k, law, sd):
        p50 = np.array([r.outcome * np.exp(sd * rng.standard_normal())])
        return RunForecast(r.history.run, "g", r.steps[-1:], np.full(1, np.nan), p50, p50 * 0.97, p50 * 1.03,
                           law=law)

    both, blunt = {}, {}
    for r in groups["g"]:
        for k in grid[r.history.run]:
            b = fc(r, k, "blunt", 0.3)
            both[(r.history.run, k)] = {"blunt": b, "sharp": fc(r, k, "sharp", 0.01)}
            blunt[(r.history.run, k)] = b
    m = replay_forecast_rule(groups, grid, both, s)
    used = {law: sum(n for (_, l_), n in m.laws.items() if l_ == law) for law in ("blunt", "sharp")}
    # blunt only until score_from(s) = 19 runs finished and scored both laws at a checkpoint
    assert score_from(s) == 19
    assert used["blunt"] <= len(grid[groups["g"][0].history.run]) * (score_from(s) + 2)
    assert used["sharp"] >= 50  # every later run is checked with it (and mostly stopped at once)
    res, res_blunt = score(m, groups, 0.01), score(replay_forecast_rule(groups, grid, blunt, s), groups, 0.01)
    assert res["compute_saved"] > res_blunt["compute_saved"]
    assert res["false_stop_rate"] == 0.0 and not res["best_run_stopped"]


def test_candidate_laws_are_what_auto_would_contest() -> None:
    from forecaster.earlystop import candidate_laws

    t = np.arange(1, 11)
    plain = RunHistory("a", t, 1.0 + 1.0 / t, group="g")
    with_lr = RunHistory("b", t, 1.0 + 1.0 / t, group="g", lr_steps=t, lr_values=np.full(10, 1e-3))
    assert candidate_laws(plain, "auto") == ("exponential", "pow3", "logpower")
    assert set(candidate_laws(with_lr, "auto")) == {"momentum", "multipower"}
    assert candidate_laws(plain, "pow3") == ("pow3",)


def test_stop_rule_judges_like_a_pruner_only_once_calibrated() -> None:
    from forecaster.calibration import local_prob_below, prob_final_below
    from forecaster.earlystop import Evidence, StopRule

    steps = np.arange(1, 11)
    p50 = np.linspace(2.0, 1.0, 10)
    f = RunForecast("r", "g", steps, np.full(10, np.nan), p50, p50 * 0.95, p50 * 1.05, law="pow3")
    rule = StopRule(delta=0.3, margin=0.01, min_calibration=5, neighbours=50)
    ev = Evidence()
    rng = np.random.default_rng(0)
    for _ in range(4):
        ev.add(f, 1.0 * np.exp(0.02 * rng.standard_normal()))
    assert rule.judge(f, 0.8, ev) is None and not rule.prune(f, 0.8, ev)  # 4 < min_calibration
    ev.add(f, 1.0)
    assert rule.judge(f, None, ev) is None  # nothing finished to beat
    v = rule.judge(f, 0.8, ev)
    bar = 0.8 * 1.01
    want = max(prob_final_below(f, bar, ev.standardised()), local_prob_below(f, bar, ev.near(), 50))
    assert v.bar == bar and v.prob == want and v.stop == (want < 0.3) == rule.prune(f, 0.8, ev)
    assert v.prob >= 1 / 6  # split-conformal floor with 5 finished runs
