"""The Forecaster: batched equals per-run, pooled groups borrow annealing, bands, determinism."""

import numpy as np
import pytest

from forecaster.forecast import Forecaster
from forecaster.histories import RunHistory
from tests.synthetic import constant_lr, cosine_lr, curve, wsd_lr

TOTAL = 4000
FULL = np.arange(TOTAL + 1)
STEPS = np.arange(250, TOTAL + 1, 50)
TRUTH = {"L0": 2.5, "A": 0.8, "alpha": 0.5, "C": 0.3}


def _run(name, lr, cut=None, group="g", seed=0, theta=TRUTH, noise=2e-3):
    y = curve("momentum", theta, STEPS, lr, noise=noise, seed=seed)
    keep = STEPS <= (cut or TOTAL)
    horizon = STEPS[~keep] if cut else None
    h = RunHistory(name, STEPS[keep], y[keep], group=group, lr_steps=FULL, lr_values=lr, horizon=horizon)
    return h, y[~keep]


def test_batched_fit_equals_per_run_fits():
    runs = [_run(f"r{i}", cosine_lr(FULL, 1e-3, TOTAL), cut=2000, group=f"g{i}", seed=i,
                 theta={**TRUTH, "L0": 2.0 + 0.3 * i})[0] for i in range(3)]
    together = Forecaster(law="momentum").fit(runs).predict()
    alone = [Forecaster(law="momentum").fit([h]).predict()[0] for h in runs]
    for a, b in zip(together, alone):
        assert a.params == pytest.approx(b.params, rel=1e-6)
        np.testing.assert_allclose(a.p50, b.p50, rtol=1e-8)


def test_deterministic_for_a_seed():
    runs = [_run("a", cosine_lr(FULL, 1e-3, TOTAL))[0], _run("b", constant_lr(FULL, 1e-3), cut=1500, seed=1)[0]]
    one = Forecaster(seed=3).fit(runs).predict()
    two = Forecaster(seed=3).fit(runs).predict()
    for a, b in zip(one, two):
        assert a.law == b.law
        np.testing.assert_array_equal(a.p10, b.p10)
        np.testing.assert_array_equal(a.p90, b.p90)


def test_constant_lr_run_borrows_annealing_from_finished_sibling():
    wsd = wsd_lr(FULL, 1e-3, TOTAL)
    finished = _run("cos", cosine_lr(FULL, 1e-3, TOTAL), seed=1)[0]
    target, truth = _run("wsd", wsd, cut=2400, seed=2)  # still at constant LR when cut
    fc = Forecaster(law="momentum").fit([finished, target]).predict()[1]
    err = abs(fc.p50[-1] - truth[-1]) / truth[-1]
    assert err < 0.01
    # without the sibling the annealing response is unknown: the band must say so
    alone = Forecaster(law="momentum").fit([target]).predict()[0]
    width_pooled = (fc.p90[-1] - fc.p10[-1]) / fc.p50[-1]
    width_alone = (alone.p90[-1] - alone.p10[-1]) / alone.p50[-1]
    assert width_alone > 3 * width_pooled
    assert fc.p10[-1] <= truth[-1] * 1.003 and truth[-1] <= fc.p90[-1] * 1.003


def test_band_orders_and_final_samples():
    target, _ = _run("wsd", wsd_lr(FULL, 1e-3, TOTAL), cut=2000)
    fc = Forecaster().fit([_run("cos", cosine_lr(FULL, 1e-3, TOTAL))[0], target]).predict()[1]
    assert np.all(fc.p10 <= fc.p50) and np.all(fc.p50 <= fc.p90)
    assert fc.final_samples is not None and len(fc.final_samples) > 50
    assert fc.law in ("momentum", "multipower")


def test_too_few_points_and_nonpositive_values_are_skipped_with_reason():
    good = _run("good", cosine_lr(FULL, 1e-3, TOTAL), cut=2000)[0]
    short = RunHistory("short", STEPS[:3], np.array([3.0, 2.9, 2.8]), group="alone", lr_steps=FULL,
                       lr_values=cosine_lr(FULL, 1e-3, TOTAL), horizon=STEPS[3:10])
    neg = RunHistory("neg", STEPS[:10], np.linspace(1, -1, 10), lr_steps=FULL,
                     lr_values=cosine_lr(FULL, 1e-3, TOTAL), horizon=STEPS[10:20])
    out = Forecaster().fit([good, short, neg]).predict()
    assert out[0].skipped is None and len(out[0].p50) == len(good.horizon)
    assert "too few points" in out[1].skipped
    assert "non-positive" in out[2].skipped


def test_a_rising_metric_is_skipped_with_reason_and_a_flat_noisy_one_is_forecast():
    t = np.arange(1, 61)
    rng = np.random.default_rng(0)
    accuracy = 0.9 - 0.5 * t ** -0.7 + rng.normal(0, 0.003, len(t))
    flat = 3.0 * np.exp(rng.normal(0, 0.01, len(t)))
    runs = [RunHistory(name, t[:40], v[:40], group=name, horizon=t[40:]) for name, v in
            (("accuracy", accuracy), ("flat", flat))]
    out = Forecaster().fit(runs).predict()
    assert "rises" in out[0].skipped and "1 - accuracy" in out[0].skipped
    assert out[1].skipped is None and abs(out[1].p50[-1] / 3.0 - 1) < 0.01
    error = RunHistory("error", t[:40], 1 - accuracy[:40], horizon=t[40:])
    assert Forecaster().fit([error]).predict()[0].skipped is None


def test_runs_without_lr_use_schedule_free_laws():
    y = curve("pow3", {"c": 2.0, "a": 5.0, "alpha": 0.6}, STEPS, None, noise=1e-3)
    h = RunHistory("nolr", STEPS[:40], y[:40], horizon=STEPS[40:])
    fc = Forecaster().fit([h]).predict()[0]
    assert fc.law in ("pow3", "exponential", "logpower")
    assert abs(fc.p50[-1] - y[-1]) / y[-1] < 0.02



def test_size_law_predicts_the_whole_curve_of_an_unseen_size():
    truth = {"L0": 1.8, "A": 0.6, "alpha": 0.5, "B": 60.0, "beta": 0.3, "C": 0.25, "gamma": 0.05}
    lr = cosine_lr(FULL, 1e-3, TOTAL)
    runs = []
    for i, n in enumerate([2e7, 6e7, 2e8]):
        y = curve("momentum_size", truth, STEPS, lr, noise=1e-3, seed=i, size=n)
        runs.append(RunHistory(f"n{i}", STEPS, y, group="sizes", lr_steps=FULL, lr_values=lr, size=n))
    big = curve("momentum_size", truth, STEPS, lr, size=1e9)
    runs.append(RunHistory("big", STEPS[:0], big[:0], group="sizes", lr_steps=FULL, lr_values=lr, size=1e9,
                           horizon=STEPS))
    fc = Forecaster(law="momentum_size").fit(runs).predict()[-1]
    assert fc.skipped is None
    assert np.max(np.abs(fc.p50 - big) / big) < 0.01
    assert np.mean((big >= fc.p10) & (big <= fc.p90)) > 0.5
    # a run without a size cannot use the size law
    nosize = RunHistory("x", STEPS, big, group="sizes", lr_steps=FULL, lr_values=lr)
    assert "model size" in Forecaster(law="momentum_size").fit(runs[:3] + [nosize]).predict()[-1].skipped


@pytest.mark.parametrize("lr", ["cosine", "wsd"])  # wsd: annealing not identified, gain drawn
def test_band_from_knots_matches_the_band_at_every_step(monkeypatch, lr):
    from forecaster import bands

    sched = cosine_lr(FULL, 1e-3, TOTAL) if lr == "cosine" else wsd_lr(FULL, 1e-3, TOTAL)
    target, _ = _run("t", sched, cut=1200)  # 56 horizon points: more than a few knots
    monkeypatch.setattr(bands, "KNOTS", 8)
    coarse = Forecaster(law="momentum", samples=4000).fit([target]).predict()[0]
    monkeypatch.setattr(bands, "KNOTS", 10_000)
    fine = Forecaster(law="momentum", samples=4000).fit([target]).predict()[0]
    assert len(coarse.steps) == 56
    for a, b in ((coarse.p10, fine.p10), (coarse.p50, fine.p50), (coarse.p90, fine.p90)):
        np.testing.assert_allclose(a, b, rtol=2e-3)
    assert np.all(np.diff(coarse.p90 - coarse.p10) != 0)  # a band that changes along the horizon


def test_a_decay_begun_just_before_the_cut_does_not_decide_the_gain():
    # the LR has fallen 1-3 % of its peak at the cut: too little to identify the annealing
    # response, so the forecast draws the gain from its range instead of extrapolating whatever
    # amplitude the noise suggested (which can drive the forecast below zero)
    wsd = wsd_lr(FULL, 1e-3, TOTAL, decay=0.4)
    for seed in range(6):
        target, truth = _run("w", wsd, cut=2460 + 20 * seed, seed=seed, noise=3e-3)
        fc = Forecaster(law="momentum", seed=seed).fit([target]).predict()[0]
        assert fc.skipped is None and any("not identifiable" in n for n in fc.notes)
        assert np.all(np.isfinite(fc.p50)) and np.all(fc.p10 > 0)
        assert fc.p10[-1] <= truth[-1] <= fc.p90[-1]


def test_the_first_transient_is_left_out_of_the_fit():
    # real losses start near ln(vocab) and fall faster than any LR law says; fitted on, that
    # transient bends the law and the forecast misses by ~1 %
    total = 10000
    full, steps = np.arange(total + 1), np.arange(20, total + 1, 20)

    def run(name, lr, cut, seed):
        y = curve("momentum", TRUTH, steps, lr, noise=2e-3, seed=seed) * (1 + 3 * np.exp(-steps / 150))
        keep = steps <= cut
        h = RunHistory(name, steps[keep], y[keep], group="g", lr_steps=full, lr_values=lr,
                       horizon=steps[~keep] if cut < total else None)
        return h, y[-1]

    errors = {}
    for skip in (0.1, 0.0):
        sibling, _ = run("cos", cosine_lr(full, 1e-3, total), total, 0)
        target, truth = run("wsd", wsd_lr(full, 1e-3, total), 5000, 10)
        fc = Forecaster(law="momentum", skip_early=skip).fit([sibling, target]).predict()[1]
        errors[skip] = abs(fc.p50[-1] / truth - 1)
    assert errors[0.1] < 0.005 < errors[0.0]


@pytest.mark.parametrize("law", ["momentum", "multipower"])
def test_unidentified_annealing_gains_only_what_the_horizon_decays(law):
    # no decay seen anywhere: a horizon at constant LR (its logged LR jittering in the last
    # digits, as float logs do) gains nothing, a planned WSD cooldown gains 0-10 %; the unfitted
    # annealing parameters must not swing the curve (multi-power's warmup share depends on them)
    jitter = 1 + 1e-9 * np.random.default_rng(0).standard_normal(len(FULL))
    for lr, planned in ((constant_lr(FULL, 1e-3) * jitter, False), (wsd_lr(FULL, 1e-3, TOTAL), True)):
        target, truth = _run("t", lr, cut=2000)
        fc = Forecaster(law=law).fit([target]).predict()[0]
        assert fc.p10[-1] <= truth[-1] <= fc.p90[-1]
        assert fc.p90[-1] / fc.p10[-1] < (1.12 if planned else 1.03)
        assert any("not identifiable" in n for n in fc.notes) == planned
        if not planned:
            assert abs(fc.p50[-1] / truth[-1] - 1) < 0.005


def test_a_curve_the_law_describes_from_its_start_keeps_every_point():
    target, _ = _run("t", cosine_lr(FULL, 1e-3, TOTAL), cut=2000)
    default = Forecaster(law="momentum").fit([target]).predict()[0]
    every_point = Forecaster(law="momentum", skip_early=0.0).fit([target]).predict()[0]
    np.testing.assert_allclose(default.p50, every_point.p50, rtol=1e-10)


def test_an_lr_logged_as_zero_throughout_is_no_lr():
    y = curve("momentum", TRUTH, STEPS, constant_lr(FULL, 1e-3), noise=2e-3)
    zero = RunHistory("z", STEPS[:40], y[:40], lr_steps=FULL, lr_values=np.zeros(len(FULL)), horizon=STEPS[40:])
    fc = Forecaster().fit([zero]).predict()[0]
    assert fc.law in ("pow3", "exponential", "logpower")  # a schedule-free law, not an LR law on zeros
    assert y[-1] * 0.95 < fc.p50[-1] <= y[39]  # heading down from the last value, not off the chart
    skipped = Forecaster(law="momentum").fit([zero]).predict()[0]
    assert "needs a learning rate" in skipped.skipped


def _cooling(law_made: bool, cut: int, seed: int = 0) -> tuple[RunHistory, float]:
    """A lone run seen part way into a WSD cooldown (steps every 10): drawn from the momentum law,
    or a loss that follows the LR at once (a noise floor proportional to it), which the momentum
    law's delayed response fits on the first part of the decay and extrapolates far too low."""
    steps = np.arange(250, TOTAL + 1, 10)
    lr = wsd_lr(FULL, 1e-3, TOTAL, decay=0.25)
    if law_made:
        y = curve("momentum", TRUTH, steps, lr, noise=3e-3, seed=seed)
    else:
        noise = np.exp(3e-3 * np.random.default_rng(seed).standard_normal(len(steps)))
        y = (2.5 + 0.8 * np.cumsum(lr)[steps] ** -0.5 + 0.25 * lr[steps] / 1e-3) * noise
    keep = steps <= cut
    return RunHistory("c", steps[keep], y[keep], lr_steps=FULL, lr_values=lr, horizon=steps[~keep]), y[-3:].mean()


def test_a_cooldown_the_law_misextrapolates_gets_the_unidentified_band():
    # fitted on the first 40 % of its cooldown, the momentum law puts this run's end 12 % low with a
    # band of +-1.4 %; the fit from half of that decay disagrees, so the response counts as unknown
    run, truth = _cooling(law_made=False, cut=3400)
    fc = Forecaster(law="momentum").fit([run]).predict()[0]
    assert any("first half of this run's own LR decay" in n for n in fc.notes)
    assert fc.p10[-1] <= truth <= fc.p90[-1]
    assert abs(fc.p50[-1] / truth - 1) < 0.03


def test_a_cooldown_the_law_describes_keeps_its_fit():
    for cut in (3250, 3400, 3600):
        run, truth = _cooling(law_made=True, cut=cut)
        fc = Forecaster(law="momentum").fit([run]).predict()[0]
        assert not any("not identifiable" in n for n in fc.notes)
        assert fc.p10[-1] <= truth <= fc.p90[-1]


def test_the_drawn_gain_covers_only_the_decay_still_to_come():
    # cut an eighth into a 1,600-step WSD cooldown to 0 (too little to identify the response): the
    # gain is drawn for the 87.5 % of the peak still to decay, not for the whole decay
    wsd = wsd_lr(FULL, 1e-3, TOTAL, decay=0.4)
    target, truth = _run("w", wsd, cut=2600, noise=3e-3)
    fc = Forecaster(law="momentum").fit([target]).predict()[0]
    assert any("band spans 0-8.8% gain" in n for n in fc.notes), fc.notes
    assert fc.p10[-1] <= truth[-1] <= fc.p90[-1]


def test_batched_noise_and_rise_checks_equal_the_per_curve_ones():
    from forecaster.bands import noise_scale, noise_scales
    from forecaster.eligibility import rises, rising

    rng = np.random.default_rng(0)
    # ragged lengths (0, 1, 2 and odd/even counts: the medians' edge cases), falling and rising curves
    vals = [np.exp(rng.normal(0, 0.05, n)) * np.linspace(3, 2 + rng.uniform(-1, 2), n)
            for n in list(range(12)) + rng.integers(12, 80, 300).tolist()]
    assert np.array_equal(noise_scales(vals), [noise_scale(v) for v in vals])
    expected = [rises(v) for v in vals]
    assert 0 < sum(expected) < len(vals) and rising(vals).tolist() == expected


def test_decay_shares_of_all_runs_at_once():
    from forecaster.batch import decay_shares, lr_per_step

    def one(h, warmup):  # the definition, run by run
        end = int(h.horizon[-1]) if h.horizon is not None and len(h.horizon) else h.last_step
        lr = lr_per_step(h, max(end, h.last_step), warmup)
        if lr is None or lr.max() <= 0:
            return 0.0, 0.0, 0
        down = np.r_[0.0, np.cumsum(np.clip(lr[:-1] - lr[1:], 0.0, None))] / lr.max()
        seen = float(down[h.last_step])
        return seen, float(down[-1]), int(np.searchsorted(down, seen / 2))

    hs = []
    grid = np.arange(3001)
    for k, lr in enumerate([cosine_lr(grid, 1e-3, 2000), wsd_lr(grid, 1e-3, 2000), constant_lr(grid, 1e-3),
                            cosine_lr(grid, 1e-3, 3000)]):
        cut, total = 600 + 400 * k, 2000 if k < 3 else 3000
        steps = np.arange(10, cut, 10)
        h = RunHistory(f"r{k}", steps, 2.0 + 1.0 / np.sqrt(steps), lr_steps=np.arange(0, total + 1, 50),
                       lr_values=lr[: total + 1 : 50], horizon=np.arange(cut, total + 1, 10))
        hs.append(h)
    hs.append(RunHistory("no-lr", np.arange(1, 50), np.linspace(3, 2, 49), horizon=np.arange(50, 60)))
    for warmup in ("linear", "peak"):
        got = np.stack(decay_shares(hs, warmup), 1)
        want = np.array([one(h, warmup) for h in hs])
        assert np.array_equal(got, want) and 0 < got[:, 0].max() < got[:, 1].max()


def test_band_quantiles_same_on_the_cpu_and_the_cuda_branch():
    import torch

    from forecaster.bands import _kth

    x = torch.randn(100, 30, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ranks = [10, 50, 90]
    fast, cuda_branch = _kth(x, ranks, numpy=True), _kth(x, ranks, numpy=False)
    for k, a, b in zip(ranks, fast, cuda_branch):
        assert torch.equal(a, b) and torch.equal(a, x.kthvalue(k, dim=0).values)
    assert torch.equal(fast[1], x.median(0).values)  # the lower median, as the bands' median


def test_chunk_biases_of_all_rows_at_once_equal_each_rows_own() -> None:
    """The batched early-misfit judge chunks every row as `np.array_split` does, one row at a time."""
    from forecaster.transients import chunk_bias, chunk_biases

    rng = np.random.default_rng(0)
    for _ in range(100):
        width = int(rng.integers(1, 40))
        diff = rng.standard_normal((6, width))
        mask = rng.random((6, width)) < rng.random()
        got = chunk_biases(diff, mask)
        for j in range(6):
            if mask[j].any():
                assert got[j] == pytest.approx(chunk_bias(diff[j][mask[j]]), abs=1e-12)
            else:
                assert np.isnan(got[j])


def test_a_warm_start_from_a_previous_fit_lands_where_a_cold_fit_does_in_fewer_steps():
    """`init`: a sync's next fit of grown histories starts from the last fit's parameters."""
    lrs = [cosine_lr(FULL, 1e-3, TOTAL), wsd_lr(FULL, 1e-3, TOTAL), constant_lr(FULL, 1e-3)]
    before = [_run(f"r{i}", lr, cut=2000, seed=i)[0] for i, lr in enumerate(lrs)]
    grown = [_run(f"r{i}", lr, cut=2200, seed=i)[0] for i, lr in enumerate(lrs)]
    last = Forecaster(law="momentum").fit(before).predict()
    cold = Forecaster(law="momentum").fit(grown)
    warm = Forecaster(law="momentum", init={f.run: f.params for f in last}).fit(grown)
    steps = [int(fit.iterations.max()) for fit, _ in cold.fits_.values()]
    warm_steps = [int(fit.iterations.max()) for fit, _ in warm.fits_.values()]
    assert sum(warm_steps) < sum(steps)
    for a, b in zip(cold.predict(), warm.predict()):
        np.testing.assert_allclose(a.p50, b.p50, rtol=2e-4)
    # a run without a previous fit (or a law with other parameters) starts cold beside warm ones
    partial = Forecaster(law="momentum", init={"r0": last[0].params, "r1": {"nope": 1.0}}).fit(grown).predict()
    for a, b in zip(cold.predict(), partial):
        np.testing.assert_allclose(a.p50, b.p50, rtol=2e-4)
    with pytest.raises(Exception, match="init"):
        Forecaster(init=[1.0]).fit(grown)


def test_a_large_group_contests_the_law_choice_with_a_spread_of_its_members():
    """At most CONTEST_MAX members fit every candidate law: targets and finished siblings each spread evenly."""
    from forecaster.lawchoice import CONTEST_MAX, _contestants

    members = list(range(300))
    few = _contestants(members, [m % 10 == 0 for m in members], CONTEST_MAX)  # 30 targets, 270 finished
    assert len(few) == CONTEST_MAX and few == sorted(few)
    assert {m for m in members if m % 10 == 0} <= set(few)  # every target contests
    assert max(few) > 290 and min(few) == 0  # the finished ones spread over the whole group
    many = _contestants(members, [True] * 300, CONTEST_MAX)
    assert len(many) == CONTEST_MAX and len(set(many)) == CONTEST_MAX
    mixed = _contestants(members, [m < 200 for m in members], CONTEST_MAX)
    assert sum(m < 200 for m in mixed) == CONTEST_MAX // 2  # half the places for the targets
    assert _contestants(members[:50], [True] * 50, CONTEST_MAX) == members[:50]


def test_the_own_decay_check_refits_a_large_group_with_a_spread_of_its_others(monkeypatch):
    """The checked runs and at most CONTEST_MAX of their group's others are refitted, not the whole group."""
    from forecaster import own_decay
    from forecaster.lawchoice import CONTEST_MAX

    seen = []
    real = own_decay.clone

    def recording(*a, **kw):
        est = real(*a, **kw)
        fit = est.fit
        est.fit = lambda hist: (seen.append(len(hist)), fit(hist))[1]
        return est

    monkeypatch.setattr(own_decay, "clone", recording)
    flat = [_run(f"c{i}", constant_lr(FULL, 1e-3), seed=i, noise=1e-3)[0] for i in range(CONTEST_MAX + 20)]
    decaying = [_run(f"d{i}", cosine_lr(FULL, 1e-3, TOTAL), cut=2400, seed=100 + i)[0] for i in range(3)]
    Forecaster(law="momentum").fit(flat + decaying).predict()
    assert seen == [3 + CONTEST_MAX]
