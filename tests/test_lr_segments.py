"""The closed-form LR features (logged LR points) equal the per-step construction they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecaster import batch, laws, lr_segments
from forecaster.histories import RunHistory

FIELDS = ("t", "lr", "s1", "log_s1", "s2", "mask", "peak", "decayed", "has_lr")


def _runs(seed: int = 0) -> list[RunHistory]:
    """Runs whose logged LR warms up, holds, decays, rises again, starts after step 0, or is one point."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(30):
        ps = np.unique(rng.integers(0 if k % 2 else 1, 5000, rng.integers(1, 40)))
        pv = rng.uniform(0, 1e-3, len(ps))
        if k % 3 == 0:  # a plateau at the peak, then a decay
            pv = np.where(ps < 2000, 1e-3, 1e-3 * (1 - (ps - 2000) / 4000))
        steps = np.arange(10, 4000, 37)
        out.append(RunHistory(f"r{k}", steps, np.ones(len(steps)), lr_steps=ps, lr_values=pv,
                              horizon=np.arange(4000, 6000 + 500 * (k % 4), 50)))
    out.append(RunHistory("one point", np.arange(1, 100), np.ones(99), lr_steps=np.array([5]),
                          lr_values=np.array([1e-3]), horizon=np.array([150, 300])))
    out.append(RunHistory("logged after the end", np.arange(1, 4), np.ones(3), lr_steps=np.array([10, 20]),
                          lr_values=np.array([1e-3, 5e-4]), horizon=np.array([4, 5])))
    out.append(RunHistory("ends on a logged step", np.arange(1, 40), np.ones(39), lr_steps=np.array([3, 20, 50, 80]),
                          lr_values=np.array([1e-3, 1e-3, 4e-4, 1e-4]), horizon=np.array([45, 50])))
    return out


@pytest.mark.parametrize("warmup", batch.WARMUP_MODES)
@pytest.mark.parametrize("where", ["observed", "horizon", "end"])
def test_closed_form_equals_per_step(warmup, where):
    runs = _runs()
    assert all(lr_segments.eligible(h) for h in runs)
    points = {"observed": [h.steps for h in runs], "horizon": [np.r_[h.last_step, h.horizon] for h in runs],
              "end": [h.horizon[-1:] for h in runs]}[where]
    closed = batch.build_features(runs, points, warmup=warmup, blocks=False)
    per_step = batch.build_features(runs, points, warmup=warmup, blocks=True)  # blocks need the per-step LR
    for name in FIELDS:
        a, b = getattr(closed, name), getattr(per_step, name)
        if a.dtype == torch.bool:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_schedule_or_unsorted_steps_take_the_per_step_path():
    h = _runs()[0]
    assert not lr_segments.eligible(RunHistory("u", h.steps, h.values, lr_steps=np.array([5, 3]),
                                               lr_values=np.array([1.0, 2.0])))
    assert not lr_segments.eligible(RunHistory("n", h.steps, h.values))


def test_negative_logged_lr_is_refused():
    h = RunHistory("neg", np.arange(1, 50), np.ones(49), lr_steps=np.array([0, 10, 20]),
                   lr_values=np.array([1e-3, -1e-4, 1e-3]), horizon=np.array([60]))
    with pytest.raises(ValueError, match="negative learning rate"):
        batch.build_features([h], [h.steps], blocks=False)


def _same_schedule(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A schedule per step and its knots (ends, both sides of every bend), which interpolate to it exactly."""
    s = np.arange(20001)
    lr = np.minimum(1e-3, 1e-3 * (s + 1) / 1000) if kind == "warmup+step" else np.full(len(s), 1e-3)
    if kind in ("step", "warmup+step"):
        lr = np.where(s >= 16000, 3e-4, lr)
        lr = np.where(s >= 18000, 1e-4, lr)
    else:  # WSD: linear to 1 % of the peak over the last fifth
        lr = np.where(s >= 16000, 1e-3 - 0.99e-3 * (s - 16000) / 4000, lr)
    bend = np.flatnonzero(np.abs(np.diff(lr, 2)) > 1e-12) + 1
    return lr, np.unique(np.r_[0, bend, len(s) - 1])


@pytest.mark.parametrize("kind", ["step", "warmup+step", "wsd"])
def test_lr_per_step_and_at_knots_give_the_same_features(kind):
    """One schedule logged every step (per-step path) or at its knots (closed forms): the same features and forecast."""
    lr, knots = _same_schedule(kind)
    steps = np.arange(len(lr))
    dense = RunHistory("dense", steps[:50], np.ones(50), lr_steps=steps, lr_values=lr)
    sparse = RunHistory("sparse", steps[:50], np.ones(50), lr_steps=knots, lr_values=lr[knots])
    assert not lr_segments.eligible(dense) and lr_segments.eligible(sparse)
    pts = np.r_[1, 999, 1000, 1001, 15999, 16000, 16001, 16500, 17999, 18000, 18001, 19000, 20000]
    for blocks in (False, True):
        a, b = (batch.build_features([h], [pts], blocks=blocks) for h in (dense, sparse))
        for name in FIELDS + (("drop", "eta_k", "s1_k") if blocks else ()):
            x, y = getattr(a, name), getattr(b, name)
            if x.dtype == torch.bool:
                assert torch.equal(x, y), name
            else:
                torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-15, msg=name)
    law = laws.get("multipower")
    theta = torch.tensor([[2.7, 1.0, 0.75, 490.0, 0.11, 0.07, 0.88]], dtype=torch.float64)  # PKU-like fit
    fd, fs = (batch.build_features([h], [pts]) for h in (dense, sparse))
    torch.testing.assert_close(law.predict(theta, fd), law.predict(theta, fs), rtol=1e-9, atol=0.0)
