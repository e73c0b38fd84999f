"""The forecast starts where the observed curve ends: no jump, a narrow band at the join."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.forecast import Forecaster
from forecaster.histories import RunHistory
from forecaster.join import join, level_at_end


def _history(noise: float, cut: int, seed: int = 0, total: int = 4000, offset: float = 0.0) -> RunHistory:
    steps = np.arange(10, total + 1, 10)
    lr = np.where(steps < 200, steps / 200, 0.5 * (1 + np.cos(np.pi * np.clip((steps - 200) / (total - 200), 0, 1))))
    area = np.cumsum(np.interp(np.arange(total + 1), steps, lr))[steps]
    clean = 2.0 + 3.0 * (1.0 + area / 50.0) ** -0.5 - 0.1 * (1 - lr)
    values = clean * np.exp(noise * np.random.default_rng(seed).standard_normal(len(steps)))
    seen = steps <= cut
    values = values * np.where(steps > cut - 300, np.exp(offset), 1.0)  # a level the law misses at the end
    return RunHistory("r", steps[seen], values[seen], group="g", lr_steps=steps, lr_values=lr * 3e-4,
                      horizon=steps[~seen])


@pytest.mark.parametrize("noise,offset", [(0.002, 0.0), (0.02, 0.0), (0.002, 0.01)])
def test_forecast_starts_at_the_observed_level_and_ends_on_the_law(noise, offset) -> None:
    h = _history(noise, cut=2000, offset=offset)
    (fc,) = Forecaster(law="momentum").fit([h]).predict()
    joined = join(h, fc)

    level, se, span = level_at_end(h)
    assert joined.steps[0] == h.steps[-1] and joined.steps[1:].tolist() == fc.steps.tolist()
    assert joined.p50[0] == pytest.approx(np.exp(level))
    # the level of the last points, not the last (noisy) point, and not the law's value
    tail = np.log(h.values[-10:]).mean()
    assert abs(np.log(joined.p50[0]) - tail) < 4 * noise + 1e-3
    # no jump: the first forecast step moves from the join by less than the point noise
    assert abs(np.log(joined.p50[1] / joined.p50[0])) < max(2 * noise, 2e-3)
    # the band is narrowest at the join
    widths = np.log(joined.p90 / joined.p10)
    assert widths[0] == widths.min() and widths[0] < np.log(fc.p90[0] / fc.p10[0])
    # far from the join the law decides: the final value is the unjoined forecast's
    assert joined.final == pytest.approx(fc.final, rel=1e-9)
    assert (joined.p10 <= joined.p50).all() and (joined.p50 <= joined.p90).all()


def test_join_leaves_skipped_and_short_forecasts_alone() -> None:
    h = _history(0.002, cut=2000)
    (fc,) = Forecaster(law="momentum").fit([h]).predict()
    short = RunHistory("r", h.steps[:3], h.values[:3], group="g")
    assert join(short, fc) is fc
    skipped = type(fc).skip("r", "g", "why")
    assert join(h, skipped) is skipped
