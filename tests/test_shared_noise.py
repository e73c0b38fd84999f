"""Deviations siblings share step by step (same data order) are carried over to a target's horizon."""

import numpy as np

from forecaster.forecast import Forecaster
from forecaster.histories import RunHistory
from tests.synthetic import constant_lr, cosine_lr, curve, wsd_lr

TOTAL = 4000
FULL = np.arange(TOTAL + 1)
STEPS = np.arange(250, TOTAL + 1, 10)
TRUTH = {"L0": 2.5, "A": 0.8, "alpha": 0.5, "C": 0.3}
BATCHES = np.exp(0.01 * np.random.default_rng(7).standard_normal(len(STEPS)))  # one data order


def _group(batches_of, cut=2000):
    """A cosine and a constant-LR sibling, finished, and a WSD target cut at `cut`; each run's
    per-step deviations are `batches_of(name)` times a little noise of its own."""
    runs, truth = [], None
    for i, (name, lr) in enumerate((("cos", cosine_lr(FULL, 1e-3, TOTAL)), ("const", constant_lr(FULL, 1e-3)),
                                    ("wsd", wsd_lr(FULL, 1e-3, TOTAL)))):
        y = curve("momentum", TRUTH, STEPS, lr, noise=1e-3, seed=i) * batches_of(name)
        if name == "wsd":
            keep = STEPS <= cut
            runs.append(RunHistory(name, STEPS[keep], y[keep], lr_steps=FULL, lr_values=lr, horizon=STEPS[~keep]))
            truth = y[~keep]
        else:
            runs.append(RunHistory(name, STEPS, y, lr_steps=FULL, lr_values=lr))
    return runs, truth


def _forecast(runs, **kw):
    return Forecaster(law="momentum", **kw).fit(runs).predict()[2]


def test_shared_batches_are_carried_into_the_horizon_and_narrow_the_band():
    runs, truth = _group(lambda name: BATCHES)
    on, off = _forecast(runs), _forecast(runs, follow_siblings=False)
    err_on = np.abs(np.log(on.p50 / truth)).mean()
    err_off = np.abs(np.log(off.p50 / truth)).mean()
    assert err_on < 0.3 * err_off  # the batches' 1 % scatter is foretold, the own 0.1 % is not
    assert np.mean((on.p90 - on.p10) / on.p50) < 0.5 * np.mean((off.p90 - off.p10) / off.p50)
    assert np.mean((truth >= on.p10) & (truth <= on.p90)) > 0.7
    assert any("same data order" in note for note in on.notes)


def test_independent_noise_is_not_carried_over():
    rng = {name: np.exp(0.01 * np.random.default_rng(seed).standard_normal(len(STEPS)))
           for seed, name in enumerate(("cos", "const", "wsd"))}
    runs, _ = _group(lambda name: rng[name])
    on, off = _forecast(runs), _forecast(runs, follow_siblings=False)
    np.testing.assert_array_equal(on.p50, off.p50)
    np.testing.assert_array_equal(on.p90, off.p90)
    assert not any("same data order" in note for note in on.notes)


def test_a_branch_repeating_the_targets_history_is_no_evidence():
    # the constant-LR sibling repeats the target's values up to the cut (the target is a cooldown
    # branched off it there) and has batches of its own after it: identical values are not evidence
    runs, _ = _group(lambda name: BATCHES)
    own = np.exp(0.01 * np.random.default_rng(11).standard_normal(len(STEPS)))
    const, target = runs[1], runs[2]
    values = const.values / BATCHES * own
    values[: len(target.steps)] = target.values
    runs = [RunHistory(const.run, const.steps, values, lr_steps=const.lr_steps, lr_values=const.lr_values), target]
    on, off = (Forecaster(law="momentum", **kw).fit(runs).predict()[1] for kw in ({}, {"follow_siblings": False}))
    np.testing.assert_array_equal(on.p50, off.p50)


def test_siblings_that_ended_before_the_horizon_change_nothing():
    runs, _ = _group(lambda name: BATCHES, cut=3000)
    short = [RunHistory(h.run, h.steps[h.steps <= 2900], h.values[h.steps <= 2900], lr_steps=h.lr_steps,
                        lr_values=h.lr_values) for h in runs[:2]]
    on, off = (Forecaster(law="momentum", **kw).fit(short + [runs[2]]).predict()[2]
               for kw in ({}, {"follow_siblings": False}))
    np.testing.assert_array_equal(on.p50, off.p50)
    assert not any("same data order" in note for note in on.notes)
