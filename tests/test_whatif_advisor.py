"""The cooldown advisor: cooling down now against the plan, later starts, the best length."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import advisor, bands, whatif
from forecaster.errors import InputError
from forecaster.forecast import Forecaster
from tests.test_whatif import TOTAL, _live, _run


@pytest.fixture(scope="module")
def decayed_group() -> Forecaster:
    return Forecaster(law="momentum").fit([_run("decayed", 4000, TOTAL, seed=1),
                                           _run("decayed-early", 2500, TOTAL, seed=2), _live()])


def test_every_option_in_one_batched_call_and_later_cooldowns_gain(decayed_group, monkeypatch) -> None:
    calls = []
    real = bands.forecast_fit
    monkeypatch.setattr(bands, "forecast_fit", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = advisor.advise(decayed_group, "live")
    assert len(calls) == 1
    assert a.stable and a.last_step == 3000 and a.total == TOTAL
    assert a.length == round(advisor.DEFAULT_SHARE * TOTAL)
    now, plan, starts, lengths = a.now, a.planned, a.of("start"), a.of("length")
    assert now is not None and plan is not None and now.end == 3000 + a.length and plan.end == TOTAL
    assert len(starts) == advisor.DEFAULT_STARTS - 1 and starts[-1].end == TOTAL
    # training on at the peak LR before the cooldown lowers the final loss, and the paired gain says so
    finals = [now.final] + [o.final for o in starts]
    assert all(np.diff(finals) < 0)
    for o in starts:
        lo, mid, hi = o.extra["gain"]
        assert 0 < lo <= mid <= hi
    # the "now" option is the run forecast under that cooldown on its own
    (alone,) = decayed_group.predict_schedules("live", [whatif.cooldown(advisor.held(_live()), 3000, a.length)])
    assert now.final == pytest.approx(alone.final, rel=1e-9)
    b = a.best_length
    assert b is not None and b["identified"] and b["p10"] <= b["length"] <= b["p90"]
    assert b["final"] == min(o.final for o in lengths) and 0 < b["probability"] <= 1
    assert all(o.unidentified is None for o in a.options) and not a.notes
    text = "\n".join(a.lines())
    lo, hi = now.interval
    assert f"cooling down now ({a.length:,} steps, linear to 0): {now.final:.3f} ({lo:.3f}-{hi:.3f})" in text
    assert f"as planned (step {TOTAL:,}): {plan.final:.3f}" in text
    assert a.to_dict()["options"][0]["kind"] == "now"


def test_a_group_without_a_decay_says_the_answer_is_not_identified() -> None:
    fc = Forecaster(law="momentum").fit([_live(), _run("flat", None, TOTAL, seed=4)])
    a = advisor.advise(fc, "live", length=1500, starts=[3000, 4500])
    assert a.now.unidentified is not None
    lo, hi = a.now.interval
    assert hi / lo > 1.01  # a wide band, never a confident number
    assert any(n.startswith("annealing response not identified") for n in a.notes)
    assert a.best_length is not None and not a.best_length["identified"]
    text = "\n".join(a.lines())
    assert "not identified" in text and "best cooldown length" in text


def test_given_starts_lengths_and_schedules(decayed_group) -> None:
    from forecaster import schedules

    spec = schedules.parse("wsd(peak=1e-3, warmup=200, decay=0.5, total=6000)")
    a = advisor.advise(decayed_group, "live", length=600, shape="cosine", final_lr=0.1,
                       starts=[3000, 5000], lengths=[1000, 2000], extra=[spec])
    assert [o.start for o in a.of("start")] == [5000]
    assert [o.length for o in a.of("length")] == [1000, 2000]
    assert a.of("schedule")[0].end == 6000
    assert "cosine to 0.1x the LR" in a.now.label


def test_stable_phase_and_bad_requests(decayed_group) -> None:
    assert advisor.stable_phase(_live())
    assert not advisor.stable_phase(_run("decaying", 2000, TOTAL, seed=5))
    with pytest.raises(InputError, match="before the run's last observed step"):
        advisor.advise(decayed_group, "live", starts=[1000])
    with pytest.raises(InputError, match="share"):
        advisor.advise(decayed_group, "live", share=1.5)
    with pytest.raises(InputError, match="last observed step"):
        advisor.advise(decayed_group, "live", lengths=[5000])
    with pytest.raises(InputError, match="not among"):
        advisor.advise(decayed_group, "nobody")


def test_cooling_down_now_for_many_runs_in_one_call_matches_each_alone() -> None:
    group = [_run("decayed", 4000, TOTAL, seed=1), _live(), _live(2400)]
    group[2].run = "live-early"
    fc = Forecaster(law="momentum").fit(group)
    both = advisor.cooldown_now(fc, [1, 2])
    for i in (1, 2):
        f, n = both[i]
        assert n == round(advisor.DEFAULT_SHARE * TOTAL) and f.steps[-1] == fc.histories_[i].last_step + n
        alone = advisor.advise(fc, i, starts=[fc.histories_[i].last_step], lengths=[]).now
        assert f.final == pytest.approx(alone.final, rel=1e-9)
        assert f.final_interval == pytest.approx(alone.interval, rel=1e-9)
    assert both[1][0].final != both[2][0].final


def test_a_what_if_under_the_real_schedule_is_the_forecast_even_when_lr_is_logged_after_warmup() -> None:
    """The steps before the first logged LR are filled as the fit filled them (a linear warmup)."""
    from forecaster import schedules
    from forecaster.histories import RunHistory

    def late(h: RunHistory, horizon: bool) -> RunHistory:
        k = h.lr_steps >= 1000
        keep = h.steps <= 3000
        return RunHistory(h.run, h.steps[keep], h.values[keep], group="g", lr_steps=h.lr_steps[k],
                          lr_values=h.lr_values[k], horizon=h.steps[~keep] if horizon else None)

    target = late(_run("target", 4000, TOTAL, seed=6), True)
    fc = Forecaster(law="momentum").fit([late(_run("decayed", 3500, TOTAL, seed=1), False), target])
    real = fc.predict()[1]
    (same,) = whatif.predict_variants(fc, [(1, schedules.from_points(target.lr_steps, target.lr_values,
                                                                     total=TOTAL))])
    assert same.final == pytest.approx(real.final, rel=1e-6)
    # a two-stage what-if: a quick drop to 10 %, then held to the end
    two = whatif.cooldown(advisor.held(target), 3000, 100, final=0.1, until=TOTAL)
    assert two.total == TOTAL and two.lr([3100, 5000]) == pytest.approx([1e-4, 1e-4])
    with pytest.raises(InputError, match="before the cooldown's end"):
        whatif.cooldown(advisor.held(target), 3000, 1000, until=3500)
