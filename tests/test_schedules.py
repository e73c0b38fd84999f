"""Schedules: known LR values per family, HF / nanoGPT parity, spec round-trips, config builders, points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecaster.errors import InputError
from forecaster.schedules import (
    WSD, Constant, Cosine, CosineRestarts, Interpolated, InvSqrt, Linear, MultiStep, Poly, Power, Step,
    format_number, from_config, from_points, parse,
)

def _same_schedule(back, s) -> None:
    """`back` is `s` as its spec writes it: the same family, steps and names exactly, numbers to the
    6 significant digits a spec keeps, and so the same LR at every step to that precision."""
    import dataclasses

    assert type(back) is type(s)
    for f in dataclasses.fields(s):
        a, b = getattr(back, f.name), getattr(s, f.name)
        if f.name == "then" and b is not None:
            _same_schedule(a, b)
        elif f.name == "points":
            assert [x for x, _ in a] == [x for x, _ in b]
            assert [y for _, y in a] == pytest.approx([y for _, y in b], rel=5e-6, abs=0)
        elif isinstance(b, float):
            assert a == pytest.approx(b, rel=5e-6, abs=0), f.name
        else:
            assert a == b, f.name
    steps = np.arange(0, (s.total or 50_000) + 5, 97)
    # near an LR of ~0 (a cosine's end) relative error is no measure: there it counts against the peak
    assert back.lr(steps) == pytest.approx(s.lr(steps), rel=2e-5, abs=1e-6 * s.peak)


# ------------------------------------------------------------------------------------------------
# Independent scalar oracles written from the HF get_scheduler lambdas and nanoGPT's get_lr, one
# step at a time, to check the vectorised module against (lr = peak * lambda(step)).


def hf_lambda(kind: str, step: int, warmup: int, total: int, **kw: float) -> float:
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * kw.get("num_cycles", 0.5) * 2.0 * progress)))
    if kind == "cosine_with_min_lr":
        f = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
        return max(0.0, f * (1 - kw["min_lr_rate"]) + kw["min_lr_rate"])
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((kw["num_cycles"] * progress) % 1.0))))
    if kind == "polynomial":
        lr_init, lr_end, power = kw["lr_init"], kw["lr_end"], kw["power"]
        if step > total:
            return lr_end / lr_init
        return ((lr_init - lr_end) * (1 - (step - warmup) / (total - warmup)) ** power + lr_end) / lr_init
    if kind == "inverse_sqrt":
        ts = kw.get("timescale") or warmup or 10_000
        return 1.0 / math.sqrt((step + ts - warmup) / ts)
    raise AssertionError(kind)


def hf_wsd_lambda(step: int, warmup: int, stable: int, decay: int, decay_type: str, r: float) -> float:
    if step < warmup:
        return max(0.0, (step / max(1, warmup)) * (1 - r) + r)
    if step < warmup + stable:
        return 1.0
    if step < warmup + stable + decay:
        p = (step - warmup - stable) / max(1, decay)
        f = {"linear": 1 - p, "cosine": 0.5 * (1 + math.cos(math.pi * p)), "1-sqrt": 1 - math.sqrt(p)}[decay_type]
        return max(0.0, f * (1 - r) + r)
    return r


def nanogpt_lr(it: int, lr: float, warmup: int, decay_iters: int, min_lr: float) -> float:
    if it < warmup:
        return lr * it / warmup  # HF-style warmup, see _from_nanogpt's docstring
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def oracle(fn, steps) -> np.ndarray:
    return np.array([fn(int(s)) for s in steps])


STEPS = np.arange(0, 1300)


# ------------------------------------------------------------------------------------------------
# Known values per family, hand-computed


def test_constant_with_warmup_known_values():
    s = Constant(peak=1e-3, warmup=10)
    assert s.lr([0, 5, 10, 1000]) == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])
    assert s.total is None


def test_linear_known_values_and_hold_after_total():
    s = Linear(peak=1e-3, warmup=10, total=110)
    assert s.lr([10, 60, 110, 500]) == pytest.approx([1e-3, 5e-4, 0.0, 0.0])
    s = Linear(peak=1e-3, warmup=10, total=110, final=1e-4)
    assert s.lr([60]) == pytest.approx([5.5e-4])


def test_cosine_known_values_and_hold_after_total():
    s = Cosine(peak=1e-3, total=100, final=1e-4)
    expect = [1e-3, 1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi / 4)), 5.5e-4, 1e-4, 1e-4]
    # step 150 holds the final LR where HF's cosine would climb back up
    assert s.lr([0, 25, 50, 100, 150]) == pytest.approx(expect, rel=1e-12)


def test_cosine_restarts_known_values():
    s = CosineRestarts(peak=1e-3, total=100, cycles=2)
    assert s.lr([0, 25, 50, 75, 100]) == pytest.approx([1e-3, 5e-4, 1e-3, 5e-4, 0.0], abs=1e-15)


def test_poly_known_values():
    s = Poly(peak=1e-3, total=100, power=2.0, final=1e-5)
    assert s.lr([0, 50, 100, 200]) == pytest.approx([1e-3, 1e-5 + 9.9e-4 * 0.25, 1e-5, 1e-5])


@pytest.mark.parametrize("shape,mid", [
    ("linear", 1.65e-4), ("sqrt", None), ("cosine", 1.65e-4), ("exp", math.sqrt(3e-4 * 3e-5))])
def test_wsd_known_values(shape, mid):
    s = WSD(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape=shape, final=3e-5)
    # decay window is the last 20% of 24000 steps: [19200, 24000]; its middle is 21600
    got = s.lr([0, 1080, 2160, 19200, 21600, 24000, 30000])
    assert got[:5:4] == pytest.approx([0.0, mid if mid else 3e-5 + 2.7e-4 * (1 - math.sqrt(0.5))])
    assert got[[1, 2, 3, 5, 6]] == pytest.approx([1.5e-4, 3e-4, 3e-4, 3e-5, 3e-5], rel=1e-12)


def test_wsd_sqrt_quarter_point_and_exp_is_geometric():
    s = WSD(peak=3e-4, total=24000, decay=0.2, shape="1-sqrt", final=0.0)
    assert s.shape == "sqrt"
    assert s.lr([20400])[0] == pytest.approx(1.5e-4)  # q = 1/4 -> 1 - sqrt(1/4) = 1/2
    e = WSD(peak=1e-3, total=1000, decay=0.5, shape="exp", final=1e-5)
    lr = e.lr(np.arange(500, 1001))
    ratios = lr[1:] / lr[:-1]
    assert np.allclose(ratios, (1e-5 / 1e-3) ** (1 / 500), rtol=1e-12)


def test_step_and_multistep_known_values():
    s = Step(peak=1.0, gamma=0.5, every=10)
    assert s.lr([0, 9, 10, 25]) == pytest.approx([1.0, 1.0, 0.5, 0.25])
    m = MultiStep(peak=0.1, gamma=0.1, milestones=(8000, 9000))
    assert m.lr([7999, 8000, 8999, 9000, 20000]) == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_invsqrt_known_values():
    s = InvSqrt(peak=1e-3, warmup=100)
    assert s.timescale == 100
    assert s.lr([50, 100, 400]) == pytest.approx([5e-4, 1e-3, 5e-4])
    s = InvSqrt(peak=1e-3)
    assert s.timescale == 10_000
    assert s.lr([0, 30000]) == pytest.approx([1e-3, 5e-4])


def test_power_scheduler_known_values():
    s = Power(peak=0.02, a=4.0, b=-0.5)
    assert s.lr([1, 40000, 160000]) == pytest.approx([0.02, 0.02, 0.01])
    d = Power(peak=0.02, a=4.0, b=-0.5, total=200000, decay=0.1, shape="exp", final=1e-3)
    v0 = 4.0 / math.sqrt(180000)
    assert d.lr([180000, 190000, 200000]) == pytest.approx([v0, math.sqrt(v0 * 1e-3), 1e-3])


def test_warmup_shapes_and_start():
    s = Constant(peak=1.0, warmup=100, start=0.2, warmup_shape="cosine")
    assert s.lr([0, 50, 100]) == pytest.approx([0.2, 0.6, 1.0])
    s = Constant(peak=1.0, warmup=100, warmup_shape="1-sqrt")
    assert s.lr([75]) == pytest.approx([0.5])


def test_lr_is_vectorised_float64_and_keeps_shape():
    s = Cosine(peak=3e-4, warmup=10, total=100)
    out = s.lr(np.arange(12).reshape(3, 4))
    assert out.dtype == np.float64 and out.shape == (3, 4)
    assert s.lr(5).shape == ()
    assert s.lr([-3])[0] == 0.0  # negative steps read as step 0


# ------------------------------------------------------------------------------------------------
# Parity with the HF lambdas and nanoGPT


@pytest.mark.parametrize("kind,kw", [
    ("linear", {}), ("cosine", {}), ("cosine", {"num_cycles": 0.3}), ("constant", {}),
    ("constant_with_warmup", {}), ("inverse_sqrt", {}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}), ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {"power": 2.0, "lr_end": 1e-6}),
])
@pytest.mark.parametrize("warmup", [0, 1, 37])
def test_from_config_matches_hf_lambdas(kind, kw, warmup):
    total, peak = 1000, 3e-4
    cfg = {"learning_rate": peak, "lr_scheduler_type": kind, "warmup_steps": warmup, "max_steps": total,
           "lr_scheduler_kwargs": kw}
    s = from_config(cfg)
    assert s is not None and s.total == total
    ref_kw = dict(kw)
    if kind == "polynomial":
        ref_kw["lr_init"] = peak
    ref = peak * oracle(lambda t: hf_lambda(kind, t, warmup, total, **ref_kw), np.arange(0, total + 1))
    assert s.lr(np.arange(0, total + 1)) == pytest.approx(ref, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("stable", [None, 500])
def test_from_config_matches_hf_wsd(decay_type, stable):
    peak, warmup, decay, total, r = 1e-3, 50, 300, 1000, 0.1
    kw = {"num_decay_steps": decay, "decay_type": decay_type, "min_lr_ratio": r}
    if stable is not None:
        kw["num_stable_steps"] = stable
    s = from_config({"learning_rate": peak, "lr_scheduler_type": "warmup_stable_decay",
                     "warmup_steps": warmup, "max_steps": total, "lr_scheduler_kwargs": kw})
    assert isinstance(s, WSD) and s.total == total
    st = stable if stable is not None else total - warmup - decay
    ref = peak * oracle(lambda t: hf_wsd_lambda(t, warmup, st, decay, decay_type, r), STEPS)
    assert s.lr(STEPS) == pytest.approx(ref, rel=1e-12)
    _same_schedule(parse(s.spec()), s)


def test_nanogpt_config_matches_get_lr_after_warmup():
    cfg = {"learning_rate": "6e-4", "warmup_iters": "200", "lr_decay_iters": "1000", "min_lr": "6e-5",
           "max_iters": "1000", "decay_lr": "True"}
    s = from_config(cfg)
    assert s == Cosine(peak=6e-4, warmup=200, total=1000, final=6e-5)
    ref = oracle(lambda t: nanogpt_lr(t, 6e-4, 200, 1000, 6e-5), STEPS)
    assert s.lr(STEPS) == pytest.approx(ref, rel=1e-12)


def test_nanogpt_decay_shorter_or_longer_than_run():
    s = from_config({"learning_rate": 6e-4, "warmup_iters": 100, "lr_decay_iters": 600, "min_lr": 6e-5,
                     "max_iters": 1000})
    assert s.total == 1000 and s.until == 600
    ref = oracle(lambda t: nanogpt_lr(t, 6e-4, 100, 600, 6e-5), STEPS)
    assert s.lr(STEPS) == pytest.approx(ref, rel=1e-12)
    _same_schedule(parse(s.spec()), s)
    s = from_config({"learning_rate": 6e-4, "warmup_iters": 100, "lr_decay_iters": 5000, "min_lr": 0,
                     "max_iters": 1000})
    assert s.total == 1000 and s.until == 5000
    assert s.lr([1000])[0] == pytest.approx(nanogpt_lr(1000, 6e-4, 100, 5000, 0.0))


def test_nanogpt_decay_off_is_constant_without_warmup():
    s = from_config({"learning_rate": "1e-3", "warmup_iters": "100", "decay_lr": "False", "max_iters": "500"})
    assert s == Constant(peak=1e-3, total=500)


# ------------------------------------------------------------------------------------------------
# Config builders with tracker-style values


def test_hf_config_with_mlflow_string_params():
    cfg = {"learning_rate": "3e-4", "lr_scheduler_type": "cosine_with_min_lr", "warmup_steps": "0",
           "warmup_ratio": "0.03", "max_steps": "1000", "lr_scheduler_kwargs": "{'min_lr': 1e-5}",
           "num_train_epochs": "3.0", "weight_decay": "0.0", "output_dir": "out"}
    s = from_config(cfg)
    assert s == Cosine(peak=3e-4, warmup=30, total=1000, final=1e-5)
    cfg["lr_scheduler_kwargs"] = '{"min_lr_rate": 0.1}'
    assert from_config(cfg).final == pytest.approx(3e-5)
    cfg["lr_scheduler_type"] = "SchedulerType.COSINE"  # str(enum) as some callbacks log it
    cfg["lr_scheduler_kwargs"] = "{}"
    assert from_config(cfg) == Cosine(peak=3e-4, warmup=30, total=1000)


def test_hf_warmup_ratio_rounds_up_and_warmup_steps_win():
    base = {"learning_rate": 1e-3, "lr_scheduler_type": "linear", "max_steps": 991}
    assert from_config({**base, "warmup_ratio": 0.1}).warmup == 100  # ceil(99.1), not round
    assert from_config({**base, "warmup_ratio": 0.1, "warmup_steps": 7}).warmup == 7


def test_hf_unknown_total():
    base = {"learning_rate": "2e-5", "max_steps": "-1", "warmup_steps": "0", "lr_scheduler_kwargs": "None"}
    assert from_config({**base, "lr_scheduler_type": "cosine"}) is None
    assert from_config({**base, "lr_scheduler_type": "constant"}) == Constant(peak=2e-5)
    assert from_config({**base, "lr_scheduler_type": "inverse_sqrt", "warmup_steps": "10"}) == \
        InvSqrt(peak=2e-5, warmup=10, timescale=10)
    # epochs with steps-per-epoch info give the total the way Trainer computes max_steps
    s = from_config({**base, "lr_scheduler_type": "linear", "num_train_epochs": "2.5",
                     "num_update_steps_per_epoch": "101"})
    assert s == Linear(peak=2e-5, total=253)


def test_hf_metric_driven_or_unknown_scheduler_gives_none():
    assert from_config({"learning_rate": 1e-3, "lr_scheduler_type": "reduce_lr_on_plateau"}) is None
    assert from_config({"learning_rate": 1e-3, "lr_scheduler_type": "someday_new", "max_steps": 10}) is None


def test_config_without_schedule_information_gives_none():
    assert from_config({}) is None
    assert from_config(None) is None
    assert from_config({"learning_rate": 1e-3, "batch_size": 32}) is None
    assert from_config({"schedule": "cosine"}) is None  # a bare word is not a spec


def test_spec_keys_win_and_accept_nesting_and_wandb_values():
    spec = "wsd(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape=linear, final=3e-5)"
    hf = {"learning_rate": 1e-3, "lr_scheduler_type": "linear", "max_steps": 10}
    assert from_config({**hf, "forecast.schedule": spec}) == parse(spec)
    assert from_config({**hf, "forecast": {"schedule": spec}}) == parse(spec)
    assert from_config({"schedule": {"value": spec, "desc": None}}) == parse(spec)
    assert from_config(spec) == parse(spec)


@pytest.mark.parametrize("cfg,words", [
    ({"learning_rate": "-3e-4", "lr_scheduler_type": "linear", "max_steps": 10}, "positive"),
    ({"learning_rate": "0", "warmup_iters": 10, "max_iters": 100}, "positive"),
    ({"learning_rate": "abc", "lr_scheduler_type": "linear", "max_steps": 10}, "not a number"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "linear", "max_steps": "ten"}, "not a number"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "cosine_with_min_lr", "max_steps": 10,
      "lr_scheduler_kwargs": {"min_lr": 1e-5, "min_lr_rate": 0.1}}, "not both"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "cosine_with_min_lr", "max_steps": 10}, "min_lr"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "polynomial", "max_steps": 10,
      "lr_scheduler_kwargs": {"lr_end": 1e-2}}, "lr_end"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "linear", "max_steps": 10,
      "lr_scheduler_kwargs": "{not a dict"}, "lr_scheduler_kwargs"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "linear", "max_steps": 10, "warmup_steps": 50}, "after warmup"),
    ({"learning_rate": 1e-3, "warmup_iters": 10, "lr_decay_iters": 100, "min_lr": 1e-2}, "above"),
    ({"learning_rate": 1e-3, "lr_scheduler_type": "warmup_stable_decay", "max_steps": 100}, "num_decay_steps"),
    ({"forecast.schedule": "cosine(peak=1e-3)"}, "total"),
])
def test_bad_config_values_raise_one_line_input_error(cfg, words):
    with pytest.raises(InputError) as e:
        from_config(cfg)
    msg = str(e.value)
    assert words in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------
# Spec round-trips


def _random_schedules(rng: np.random.Generator) -> list:
    peak = float(10 ** rng.uniform(-5, -1))
    final = float(peak * rng.uniform(0.0, 0.3))
    warmup = int(rng.integers(0, 3000))
    total = warmup + int(rng.integers(1, 100_000))
    return [
        Constant(peak=peak, warmup=warmup),
        Constant(peak=peak, warmup=warmup, total=total, start=final, warmup_shape="cosine"),
        Linear(peak=peak, warmup=warmup, total=total, final=final),
        Cosine(peak=peak, warmup=warmup, total=total, final=final),
        Cosine(peak=peak, warmup=warmup, total=total, final=final, cycles=float(rng.uniform(0.1, 2)),
               until=total + 17),
        CosineRestarts(peak=peak, warmup=warmup, total=total, cycles=int(rng.integers(1, 5))),
        Poly(peak=peak, warmup=warmup, total=total, power=float(rng.uniform(0.5, 3)), final=final),
        *[WSD(peak=peak, warmup=warmup, total=total, decay=float(rng.uniform(0, 1)), shape=sh,
              final=final + 1e-9) for sh in ("linear", "sqrt", "cosine", "exp")],
        Step(peak=peak, warmup=warmup, gamma=float(rng.uniform(0.1, 0.9)), every=int(rng.integers(1, 5000))),
        MultiStep(peak=peak, warmup=warmup, total=total,
                  milestones=tuple(sorted(set(rng.integers(0, 50_000, 3).tolist())))),
        InvSqrt(peak=peak, warmup=warmup),
        InvSqrt(peak=peak, warmup=warmup, total=total, timescale=int(rng.integers(1, 20_000))),
        Power(peak=peak, a=float(rng.uniform(0.1, 10)), b=float(-rng.uniform(0, 1)), warmup=warmup,
              total=total, decay=0.1, shape="exp", final=final + 1e-9),
        from_points(np.sort(rng.choice(100_000, 6, replace=False)), rng.uniform(0, peak, 6)),
        from_points([0, 10, 20], [0.0, peak, peak], then=Cosine(peak=peak, total=total + 30, final=final)),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_every_family_round_trips_through_its_spec(seed):
    for s in _random_schedules(np.random.default_rng(seed)):
        text = s.spec()
        assert "\n" not in text
        back = parse(text)
        _same_schedule(back, s)
        assert back.spec() == text  # a spec read back writes itself unchanged


def test_spec_text_is_readable_and_accepts_aliases_and_spaces():
    s = WSD(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape="linear", final=3e-5)
    assert s.spec() == "wsd(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape=linear, final=3e-5)"
    assert parse(" WSD( lr=0.0003 , warmup=2160,total=24000, decay_steps=4800, shape=1-sqrt, min_lr=3e-5 ) ") \
        == WSD(peak=3e-4, warmup=2160, total=24000, decay=0.2, shape="sqrt", final=3e-5)
    assert parse("warmup_stable_decay(peak=1e-3, total=100)") == WSD(peak=1e-3, total=100)
    assert parse("multistep(peak=0.1, milestones=8000;9000)").milestones == (8000, 9000)
    assert parse("cosine(peak=1e-3, total=2.4e4)").total == 24000


def test_format_number_is_short_and_exact():
    for x in (3e-4, 0.1, 1e-7, 6e-05, 0.0, 1.0, 2.5, 123456.789, 1 / 3, 5e-324, 1.7976931348623157e308):
        t = format_number(x)
        assert float(t) == x
        assert len(t) <= len(repr(x))
    assert format_number(3e-4) == "3e-4"
    assert format_number(0.5) == "0.5"


@pytest.mark.parametrize("spec,words", [
    ("", "empty"),
    ("cosine", "name(key=value"),
    ("cosine(peak=3e-4, total=100", "name(key=value"),
    ("cosine(peak=(3e-4, total=100)", "unbalanced"),
    ("foo(peak=1e-3)", "unknown schedule 'foo'"),
    ("cosine(peak=abc, total=100)", "peak must be a finite number"),
    ("cosine(peak=nan, total=100)", "finite"),
    ("cosine(peak=1e-3)", "needs total"),
    ("cosine(total=100)", "needs peak"),
    ("cosine(peak=1e-3, total=100, bogus=1)", "unknown parameter 'bogus'"),
    ("cosine(peak=1e-3, total=100, total=200)", "twice"),
    ("cosine(peak=1e-3, total=100, 5)", "not key=value"),
    ("cosine(peak=1e-3, total=100, warmup=2.5)", "whole number"),
    ("cosine(peak=1e-3, total=100, warmup=100)", "after warmup"),
    ("cosine(peak=-3e-4, total=100)", "positive"),
    ("cosine(peak=1e-3, total=100, final=-1e-5)", "final LR"),
    ("cosine(peak=1e-3, total=100, final=1e-2)", "final LR"),
    ("wsd(peak=1e-3, total=100, shape=wiggle)", "unknown decay shape 'wiggle'"),
    ("wsd(peak=1e-3, total=100, shape=exp)", "final > 0"),
    ("wsd(peak=1e-3, total=100, decay=1.5)", "decay"),
    ("wsd(peak=1e-3, total=100, decay=0.2, decay_steps=20)", "not both"),
    ("step(peak=1e-3, gamma=0.5)", "every"),
    ("multistep(peak=1e-3, milestones=9000;8000)", "increasing"),
    ("multistep(peak=1e-3)", "milestones"),
    ("power(peak=1e-3, a=1, b=0.5)", "b <= 0"),
    ("points(at=0:1e-3;0:2e-3)", "increasing"),
    ("points(at=0:-1e-3)", "negative"),
    ("points(at=5)", "<step>:<LR>"),
    ("points(then=constant(peak=1))", "at="),
])
def test_bad_spec_raises_one_line_input_error(spec, words):
    with pytest.raises(InputError) as e:
        parse(spec)
    msg = str(e.value)
    assert words in msg, msg
    assert "\n" not in msg and msg.startswith("bad schedule spec")


def test_negative_lr_in_constructor_raises_input_error():
    with pytest.raises(InputError, match="positive"):
        Constant(peak=-1e-3)
    with pytest.raises(InputError, match="negative"):
        from_points([0, 1], [1e-3, -1e-3])


# ------------------------------------------------------------------------------------------------
# Interpolated points


def test_from_points_interpolates_and_holds_last_value():
    s = from_points([100, 0, 200], [1e-3, 0.0, 5e-4])  # unsorted input is sorted
    assert isinstance(s, Interpolated)
    assert s.points == ((0, 0.0), (100, 1e-3), (200, 5e-4))
    assert s.lr([0, 50, 100, 150, 200, 1000]) == pytest.approx([0, 5e-4, 1e-3, 7.5e-4, 5e-4, 5e-4])
    assert s.peak == 1e-3 and s.total is None and s.warmup == 0


def test_from_points_before_first_point_holds_first_value_and_duplicates_keep_last():
    s = from_points(np.array([10.0, 20.0, 20.0]), [1e-3, 9e-4, 8e-4])
    assert s.lr([0, 10, 20]) == pytest.approx([1e-3, 1e-3, 8e-4])


def test_from_points_then_schedule_past_the_points():
    plan = Cosine(peak=1e-3, warmup=0, total=1000, final=1e-4)
    past = np.arange(0, 301, 50)
    s = from_points(past, plan.lr(past) * 1.01, then=plan)  # logged a bit off the plan
    assert s.total == 1000 and s.peak == pytest.approx(1.01e-3)
    future = np.array([301, 500, 999, 1000, 2000])
    assert s.lr(future) == pytest.approx(plan.lr(future))
    assert s.lr([25])[0] == pytest.approx(1.01 * 0.5 * (plan.lr([0])[0] + plan.lr([50])[0]))
    _same_schedule(parse(s.spec()), s)
    assert from_points([0, 1], [1e-3, 1e-3], total=5000).total == 5000


def test_from_points_rejects_bad_input():
    with pytest.raises(InputError):
        from_points([0, 1, 2], [1e-3, 1e-3])
    with pytest.raises(InputError):
        from_points([0, 1.5], [1e-3, 1e-3])
    with pytest.raises(InputError):
        from_points([], [])
    with pytest.raises(InputError, match="negative or not finite"):
        from_points([0, 1], [1e-3, float("nan")])


def test_spec_numbers_are_short_and_keep_the_decay_window():
    s = parse("wsd(peak=3e-4, warmup=100, total=24000, decay_steps=4000, final=3e-5)")
    assert s.decay == 4000 / 24000
    assert s.spec() == "wsd(peak=3e-4, warmup=100, total=24000, decay=0.166667, shape=linear, final=3e-5)"
    back = parse(s.spec())
    steps = np.arange(0, 24001)
    assert np.array_equal(back.lr(steps), s.lr(steps))  # the same 4,000-step window, so the same LRs
    # a fraction whose 6-digit form would move the window by a step keeps the digits that hold it
    odd = WSD(peak=1e-3, total=2_000_000, decay=0.2500003)  # a window of 500,001 steps; 0.25 gives 500,000
    assert "decay=0.2500003," in odd.spec()
    assert np.array_equal(parse(odd.spec()).lr(np.arange(1_499_990, 1_500_010)), odd.lr(np.arange(1_499_990, 1_500_010)))
    assert parse(Cosine(peak=1 / 3 * 1e-3, total=1000, final=1e-5).spec()).peak == 3.33333e-4
