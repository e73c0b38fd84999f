"""Self-calibrating bands: a group's finished siblings, cut at the target's share and forecast the
same way, widen an over-narrow band, narrow an over-wide one, and leave a group without any alone."""

import numpy as np
import pytest

from forecaster import selfcal
from forecaster.forecast import Forecaster
from forecaster.histories import RunHistory
from tests.synthetic import constant_lr, cosine_lr, curve, wsd_lr

TOTAL = 4000
FULL = np.arange(TOTAL + 1)
STEPS = np.arange(250, TOTAL + 1, 50)
TRUTH = {"L0": 2.5, "A": 0.8, "alpha": 0.5, "C": 0.3}
SCHEDULES = [cosine_lr(FULL, 1e-3, TOTAL), wsd_lr(FULL, 1e-3, TOTAL), wsd_lr(FULL, 1e-3, TOTAL, decay=0.4),
             cosine_lr(FULL, 1e-3, TOTAL, final=0.3), wsd_lr(FULL, 1e-3, TOTAL, decay=0.3)]


def _group(group: str, drift: float, seed: int, cut: int = 2000, siblings: int = 4) -> list[RunHistory]:
    """A target cut at `cut` and its finished siblings, all from the momentum law with a slow drift
    of each run's own sign and size `drift` at the end that the law cannot describe."""
    rng = np.random.default_rng(seed)
    out = []
    for k, lr in enumerate(SCHEDULES[: siblings + 1]):
        y = curve("momentum", TRUTH, STEPS, lr, noise=1e-3, seed=seed + k)
        y = y * np.exp(drift * rng.choice([-1.0, 1.0]) * (0.5 + rng.random()) * (STEPS / TOTAL) ** 2)
        keep = STEPS <= cut if k == 0 else np.ones(len(STEPS), bool)
        out.append(RunHistory(f"r{k}", STEPS[keep], y[keep], group=group, lr_steps=FULL, lr_values=lr,
                              horizon=STEPS[~keep] if k == 0 else None))
    return out


def _half_width(f) -> float:
    return float(np.log(f.p90[-1] / f.p10[-1]) / 2)


def _both(runs, **settings):
    plain = Forecaster(law="momentum", follow_siblings=False, **settings)
    cal = Forecaster(law="momentum", follow_siblings=False, selfcal=True, **settings)
    return plain.fit(runs).predict(), cal.fit(runs), cal


def test_siblings_widen_an_over_narrow_band_and_a_group_without_finished_siblings_is_unchanged():
    drifting = _group("drift", drift=0.03, seed=1)
    lone = _group("lone", drift=0.03, seed=2, siblings=0)
    before, fitted, cal = _both(drifting + lone, misfit=0.0, extrapolation=0.0)
    after = fitted.predict()
    c = cal.selfcal_["drift"]
    assert c.siblings == 4 and c.factor > 1.5  # the drift the law cannot describe is far outside a noise band
    assert _half_width(after[0]) == pytest.approx(c.factor * _half_width(before[0]), rel=1e-6)
    np.testing.assert_allclose(after[0].p50, before[0].p50)
    assert "lone" not in cal.selfcal_
    lone_row = len(drifting)
    np.testing.assert_array_equal(after[lone_row].p10, before[lone_row].p10)
    np.testing.assert_array_equal(after[lone_row].p90, before[lone_row].p90)
    for f in after[1:lone_row]:  # finished siblings carry no forecast to scale
        assert not len(f.steps)


def test_siblings_narrow_an_over_wide_band():
    clean = _group("clean", drift=0.0, seed=3)
    before, fitted, cal = _both(clean, inflation=20.0, misfit=20.0, extrapolation=0.2)
    after = fitted.predict()
    c = cal.selfcal_["clean"]
    assert c.factor < 0.7
    assert _half_width(after[0]) < 0.7 * _half_width(before[0])
    assert after[0].p10[-1] <= after[0].p50[-1] <= after[0].p90[-1]


def test_shrinkage_pulls_a_few_siblings_toward_one():
    z = np.linspace(-3.0, 3.0, 41)  # 80 % of |z| within 2.4 half-widths
    errors = {"few": [z], "many": [z] * 8}
    for how in ("q80", "rms"):
        got = selfcal.factors(errors, shrink=2.0, how=how)
        assert got["few"].raw == pytest.approx(got["many"].raw)
        assert 1.0 < got["few"].factor < got["many"].factor < got["many"].raw
    assert selfcal.factors(errors, how="q80")["many"].raw == pytest.approx(2.4, abs=0.16)
