"""What-if schedules: one fitted run forecast under candidate futures for its learning rate."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import schedules, whatif
from forecaster.errors import InputError
from forecaster.forecast import Forecaster
from forecaster.histories import RunHistory

TOTAL = 6000
STEPS = np.arange(20, TOTAL + 1, 20)


def _lr(total: int, decay_from: int | None) -> np.ndarray:
    """Warmup to 1e-3, constant, then (from `decay_from`) linear to 0 at `total`."""
    s = np.arange(total + 1, dtype=float)
    lr = np.minimum(1.0, s / 200) * 1e-3
    if decay_from is not None:
        lr = np.where(s > decay_from, lr * np.clip((total - s) / (total - decay_from), 0, 1), lr)
    return lr


def _loss(lr: np.ndarray) -> np.ndarray:
    """A momentum-law-like curve: falls with the LR area, drops further as the LR anneals."""
    area = np.cumsum(lr) / 1e-3
    drop = np.cumsum(np.maximum(0.0, -np.diff(lr, prepend=lr[0]))) / 1e-3
    return 2.0 + 4.0 * (1.0 + area / 100.0) ** -0.4 - 0.35 * drop


def _run(name: str, decay_from: int | None, seen: int, noise: float = 0.002, seed: int = 0) -> RunHistory:
    lr = _lr(TOTAL, decay_from)
    y = _loss(lr)[STEPS] * np.exp(noise * np.random.default_rng(seed).standard_normal(len(STEPS)))
    keep = STEPS <= seen
    return RunHistory(name, STEPS[keep], y[keep], group="g", lr_steps=STEPS, lr_values=lr[STEPS],
                      horizon=STEPS[~keep] if seen < TOTAL else None)


def _live(seen: int = 3000) -> RunHistory:
    """Constant LR so far, logged only up to where it has been seen (its future is the question)."""
    h = _run("live", None, seen, seed=3)
    past = h.lr_steps <= seen
    return RunHistory(h.run, h.steps, h.values, group="g", lr_steps=h.lr_steps[past],
                      lr_values=h.lr_values[past], horizon=np.arange(seen + 20, TOTAL + 1, 20))


def test_cooling_down_now_beats_holding_the_lr_and_later_cooldowns_land_lower() -> None:
    group = [_run("decayed", 4000, TOTAL, seed=1), _run("decayed-early", 2500, TOTAL, seed=2), _live()]
    fc = Forecaster(law="momentum").fit(group)
    live = fc.histories_[2]
    hold = schedules.from_points([0, 200, 4000], [0.0, 1e-3, 1e-3], total=4000)  # stop at 4000, no cooldown
    now = whatif.cooldown(live, 3000, 1000)
    later = whatif.cooldown(live, 4000, 1000)
    as_sibling = whatif.cooldown(live, 4000, 2000)  # the schedule "decayed" was trained with
    out = fc.predict_schedules("live", [hold, now, later, as_sibling])
    finals = [o.final for o in out]
    assert all(o.skipped is None for o in out)
    # at the same end, cooling down gains; cooling down later (more training) gains more
    assert finals[1] < finals[0] and finals[2] < finals[1]
    assert [int(o.steps[-1]) for o in out] == [4000, 4000, 5000, TOTAL]
    for o in out:
        assert (o.p10 <= o.p50).all() and (o.p50 <= o.p90).all()
    # the same as forecasting the run with that schedule known from the start
    lr = _lr(TOTAL, 4000)
    planned = RunHistory("live", live.steps, live.values, group="g", lr_steps=STEPS, lr_values=lr[STEPS],
                         horizon=np.arange(3020, TOTAL + 1, 20))
    direct = Forecaster(law="momentum").fit(group[:2] + [planned]).predict()[2]
    assert out[3].final == pytest.approx(direct.final, rel=1e-5)
    assert out[3].final_interval == pytest.approx(direct.final_interval, rel=1e-3)
    # the fitted run's own forecast is untouched by the what-ifs
    assert len(fc.histories_) == 3 and fc.predict()[2].steps[-1] == TOTAL


def test_a_group_that_never_decayed_says_the_response_is_not_identified() -> None:
    fc = Forecaster(law="momentum").fit([_live(), _run("flat", None, TOTAL, seed=4)])
    live = fc.histories_[0]
    (o,) = fc.predict_schedules(0, [whatif.cooldown(live, 3000, 1500)])
    assert any("not identifiable" in n for n in o.notes)
    assert o.p90[-1] / o.p10[-1] > 1.01  # a wide band, not a confident number


def test_bad_candidates_are_input_errors() -> None:
    fc = Forecaster(law="momentum").fit([_run("decayed", 4000, TOTAL, seed=1), _live()])
    live = fc.histories_[1]
    with pytest.raises(InputError, match="shape"):
        whatif.cooldown(live, 3000, 100, shape="zigzag")
    with pytest.raises(InputError, match="after the run's last observed step"):
        fc.predict_schedules("live", [whatif.cooldown(live, 1000, 500)])
    with pytest.raises(InputError, match="not among"):
        fc.predict_schedules("nobody", [])
