"""The tracker interface's generic helpers: history cleaning, discovery, fingerprints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster import DISTRIBUTION, trackers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from forecaster.errors import InputError


def test_clean_series_sorts_and_keeps_last_write_per_step() -> None:
    s = trackers.clean_series([3, 1, 2, 2, 1], [30.0, 10.0, 20.0, 21.0, 11.0], [5, 1, 2, 9, 0])
    assert s.steps.tolist() == [1, 2, 3]
    # step 1: timestamp 1 beats timestamp 0; step 2: timestamp 9 wins
    assert s.values.tolist() == [10.0, 21.0, 30.0]


def test_clean_series_ties_on_timestamp_go_to_the_later_write_and_nan_is_kept() -> None:
    s = trackers.clean_series([0, 0, 1], [1.0, 2.0, np.nan], [7, 7, 7])
    assert s.values[0] == 2.0 and np.isnan(s.values[1])


def test_unknown_tracker_names_what_is_installed() -> None:
    with pytest.raises(InputError, match="unknown tracker 'nope'") as e:
        trackers.load("nope")
    assert "mlflow" in str(e.value)
    assert "pip install" not in str(e.value)  # no extra is called "nope": pointing at one would fail
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert DISTRIBUTION == project["name"]


def test_a_tracker_whose_extra_is_missing_gets_the_install_line(monkeypatch) -> None:
    """The hint names this project's distribution, not the unrelated "forecaster" on PyPI."""
    monkeypatch.setattr(trackers.registry, "available", lambda: {})
    with pytest.raises(InputError) as e:
        trackers.load("wandb")
    assert f"pip install '{DISTRIBUTION}[wandb]'" in str(e.value)


def test_fingerprint_is_stable_and_sensitive() -> None:
    assert trackers.fingerprint("a", 1) == trackers.fingerprint("a", 1)
    assert trackers.fingerprint("a", 1) != trackers.fingerprint("a", 2)


def test_written_series_keep_what_a_chart_draws() -> None:
    """A forecast is written with the points that draw it as all of them do, within DRAWN_TOL of its range."""
    from forecaster.trackers.series import DRAWN_TOL, drawn

    steps = np.arange(3001, 6001, 6)
    p50 = 3 + 5 / np.sqrt(steps)
    lo, hi = p50 - 0.01, p50 + 0.02 * (steps - 3000) / 3000
    idx = drawn(steps, [p50, lo, hi], 500)
    assert idx[0] == 0 and idx[-1] == len(steps) - 1 and len(idx) < 40
    for y in (p50, lo, hi):
        assert np.max(np.abs(np.interp(steps, steps[idx], y[idx]) - y)) <= DRAWN_TOL * np.ptp(y)
    lr = np.where(steps < 5000, 1e-3, 1e-3 * (6000 - steps) / 1000)  # a planned WSD decay from step 5,000
    k = drawn(steps, [lr], 500)
    assert len(k) < 20 and np.max(np.abs(np.interp(steps, steps[k], lr[k]) - lr)) <= DRAWN_TOL * np.ptp(lr)
    noisy = p50 + 0.01 * np.random.default_rng(0).standard_normal(len(steps))  # no fewer points draw noise
    assert len(drawn(steps, [noisy], 50)) == 50


def test_a_revision_writes_each_curve_and_its_band_at_the_same_steps_within_the_budget() -> None:
    from forecaster.histories import RunForecast

    steps = np.arange(1000, 4001, 10)
    p50 = 3 + 5 / np.sqrt(steps)
    noisy = p50 + 0.01 * np.random.default_rng(1).standard_normal(len(steps))
    fc = RunForecast(run="r", group="g", steps=steps, lr=np.full(len(steps), 1e-3), p50=p50, p10=p50 - 0.01,
                     p90=p50 + 0.01)
    cooled = RunForecast(run="r", group="g", steps=steps, lr=np.zeros(len(steps)), p50=noisy, p10=noisy - 0.01,
                         p90=noisy + 0.01)
    rev = trackers.ForecastRevision(
        source=trackers.RunInfo("r", "r", "s", trackers.RUNNING), input="x", curves={"loss": fc},
        whatif={"loss.if_cooldown_now": cooled}, lr_key="lr", lr_steps=steps, lr_values=np.full(len(steps), 1e-3))
    for budget in (None, 140):
        got = {k: (st, v) for k, st, v in rev.series(budget)}
        assert set(got) == {"loss", "loss.p10", "loss.p90", "loss.if_cooldown_now", "loss.if_cooldown_now.p10",
                            "loss.if_cooldown_now.p90", "lr"}
        for key in ("loss", "loss.if_cooldown_now"):
            assert all(np.array_equal(got[key][0], got[k][0]) for k in (f"{key}.p10", f"{key}.p90"))
        assert len(got["loss"][0]) < 40 and len(got["lr"][0]) <= 8  # smooth; flat
        assert len(got["loss.if_cooldown_now"][0]) == (len(steps) if budget is None else budget // 7)
