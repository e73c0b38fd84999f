"""The backtest protocol (shared docs/evaluation.md) as pure functions: cases, scores, baselines, summary."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import backtest as bt
from forecaster.histories import RunForecast, RunHistory


def run(name, group="g", last=1000, every=10, lr_every=50, finished=True, fn=None):
    steps = np.arange(every, last + 1, every)
    values = fn(steps) if fn else 2.0 + 5.0 / np.sqrt(steps)
    lr_steps = np.arange(0, last + 1, lr_every)
    horizon = None
    if not finished:
        keep = steps <= last // 2
        horizon = steps[~keep]
        steps, values = steps[keep], values[keep]
    rows = np.union1d(np.union1d(steps, lr_steps), horizon if horizon is not None else [])
    return RunHistory(name, steps, values, group=group, lr_steps=lr_steps, lr_values=np.full(len(lr_steps), 1e-3),
                      horizon=horizon, meta={"row_steps": rows.astype(np.int64)})


def test_cases_cut_target_keep_lr_and_siblings():
    hs = [run("a"), run("b", last=500), run("c", finished=False), run("d", group="h")]
    cases = bt.make_cases(hs, [0.25, 0.5])
    # finished runs a, b (group g) and d (group h), two cutoffs each; the unfinished run is no target
    assert [(c.group, c.target, c.cutoff) for c in cases] == [
        ("g", "a", 0.25), ("g", "a", 0.5), ("g", "b", 0.25), ("g", "b", 0.5), ("h", "d", 0.25), ("h", "d", 0.5)]
    c = cases[0]
    assert c.cut_step == 250
    t = c.observed
    assert t.steps.max() == 250 and len(t.steps) == 25
    assert t.lr_steps.tolist() == hs[0].lr_steps.tolist()  # LR rows kept to the end
    assert t.horizon[0] == 260 and t.horizon[-1] == 1000
    assert c.hidden_steps.tolist() == list(range(260, 1001, 10))
    assert c.final_steps.tolist() == [980, 990, 1000]
    assert c.truth == pytest.approx(np.mean(2.0 + 5.0 / np.sqrt([980, 990, 1000])))
    # siblings complete, nothing to forecast; every run of a case shares one case group
    sib = c.histories[1]
    assert len(sib.steps) == len(hs[1].steps) and sib.horizon is None
    assert {h.group for h in c.histories} == {c.key}
    assert len({x.key for x in cases}) == len(cases)
    assert c.skipped is None


def test_too_short_cases_are_skipped_with_reason():
    (case,) = bt.make_cases([run("a", last=60)], [0.25])
    assert "observed points" in case.skipped
    (case,) = bt.make_cases([run("a", last=1000)], [0.999])
    assert "fewer than 3 hidden" in case.skipped


def test_score_follows_protocol():
    (case,) = bt.make_cases([run("a", last=100, fn=lambda s: 3.0 - s / 100)], [0.5])
    # hidden steps 60..100, truth = mean(2.1, 2.0, 1.9... ) of the last three values
    assert case.truth == pytest.approx(np.mean([3 - 0.8, 3 - 0.9, 3 - 1.0]))
    steps = case.hidden_steps
    p50 = np.full(len(steps), 2.2)
    p10, p90 = p50 - 0.05, p50 + 0.05
    s = bt.score(case, steps, p50, p10, p90)
    assert s.prediction == pytest.approx(2.2)
    assert s.final_error == pytest.approx(abs(2.2 - 2.1) / 2.1)
    truth = 3 - steps / 100
    assert s.unseen_error == pytest.approx(np.mean(np.abs(2.2 - truth) / truth))
    assert s.points == 5 and s.inside == 1 and s.coverage == pytest.approx(0.2)  # only 2.2 at step 80


def test_baselines():
    truth = lambda s: 1.5 + 4.0 * (s / 1000.0) ** -0.7  # noqa: E731
    (case,) = bt.make_cases([run("a", last=2000, fn=truth)], [0.5])
    assert np.all(bt.last_value(case) == case.observed.values[-1])
    pl = bt.power_law(case)
    np.testing.assert_allclose(pl, truth(case.hidden_steps), rtol=1e-5)
    # an LR-decay drop the power law cannot know about
    fn = lambda s: truth(s) - 0.3 * (s > 1500)  # noqa: E731
    (case,) = bt.make_cases([run("a", last=2000, fn=fn)], [0.5])
    assert bt.score(case, case.hidden_steps, bt.power_law(case)).final_error > 0.05


def _fc(case, bias):
    s = case.observed.horizon
    truth = np.interp(s, case.hidden_steps, case.hidden_values)
    return RunForecast(case.target, case.key, s, np.full(len(s), 1e-3), truth * (1 + bias), truth * 0.99,
                       truth * 1.01, law="momentum")


def test_evaluate_and_summarize_structure():
    hs = [run("a"), run("b", last=500), run("tiny", group="h", last=40)]
    cuts = [0.25, 0.5]
    cases = bt.make_cases(hs, cuts)
    fcs = [None if c.skipped else _fc(c, 0.01 if c.cutoff == 0.25 else 0.02) for c in cases]
    fcs[1] = RunForecast.skip("a", cases[1].key, "too few points")
    res = bt.evaluate(cases, fcs)
    assert res[1].skipped.startswith("forecaster skipped") and not res[1].scores
    rows = bt.summarize(res, cuts)
    assert [r["cutoff"] for r in rows] == cuts
    r25, r50 = rows
    assert r25["cases"] == 2 and r25["skipped"] == 1  # tiny run: too short
    assert r50["cases"] == 1 and r50["skipped"] == 2
    assert set(r25["methods"]) == {"forecaster", "last_value", "power_law"}
    f = r25["methods"]["forecaster"]
    assert f["final_mean"] == pytest.approx(0.01) and f["final_worst"] == pytest.approx(0.01)
    assert f["coverage"] == 1.0  # the band is built around the truth here
    assert "coverage" not in r25["methods"]["last_value"]
    recs = bt.case_records(res)
    assert len(recs) == len(cases) and recs[0]["forecaster"]["final_error"] == pytest.approx(0.01)
    table = bt.markdown(rows)
    assert table.splitlines()[0].startswith("| cutoff | method |") and "| 0.25 | forecaster | 2 |" in table
