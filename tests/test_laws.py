"""Each law recovers its parameters from synthetic curves it generated."""

import numpy as np
import pytest
import torch

from forecaster import batch, laws
from forecaster.batch import build_features
from forecaster.fit import fit_groups
from forecaster.histories import RunHistory
from tests.synthetic import constant_lr, cosine_lr, curve, wsd_lr

TOTAL = 3000
STEPS = np.arange(250, TOTAL + 1, 25)
LR_RUNS = {
    "cosine": cosine_lr(np.arange(TOTAL + 1), 1e-3, TOTAL),
    "wsd": wsd_lr(np.arange(TOTAL + 1), 1e-3, TOTAL),
    "constant": constant_lr(np.arange(TOTAL + 1), 1e-3),
    "cosine_half": cosine_lr(np.arange(TOTAL + 1), 1e-3, TOTAL // 2),
}
TRUTH = {
    "momentum": {"L0": 2.5, "A": 0.8, "alpha": 0.5, "C": 0.3},
    "multipower": {"L0": 2.5, "A": 0.8, "alpha": 0.5, "B": 300.0, "C": 1.5, "beta": 0.55, "gamma": 0.6},
    "pow3": {"c": 2.0, "a": 5.0, "alpha": 0.6},
    "exponential": {"c": 0.5, "a": 2.0, "b": 0.002},
    "logpower": {"c": 1.0, "a": 3.0, "b": 6.5, "k": 2.0},
}


def _fit_shared(name, curves):
    """Fit one parameter set to several curves (a group with every parameter shared)."""
    hs = [RunHistory(k, STEPS, y, lr_steps=None if lr is None else np.arange(TOTAL + 1), lr_values=lr)
          for k, (y, lr) in curves.items()]
    f = build_features(hs, [STEPS] * len(hs))
    y = torch.tensor(np.stack([c[0] for c in curves.values()]))
    members = torch.arange(len(hs))[None]
    fit = fit_groups(laws.get(name), f, y, members, pool=1e8, max_iter=200)
    return dict(zip(laws.get(name).params, fit.theta()[0, 0].tolist()))


@pytest.mark.parametrize("name", ["momentum", "multipower"])
def test_lr_laws_recover_parameters(name):
    truth = TRUTH[name]
    curves = {k: (curve(name, truth, STEPS, lr, noise=1e-4, seed=i), lr) for i, (k, lr) in enumerate(LR_RUNS.items())}
    got = _fit_shared(name, curves)
    # L0, A, alpha trade off against each other; a law that recovers the curve family
    # recovers them to within a few percent with little noise
    tol = {"L0": 0.02, "A": 0.05, "alpha": 0.05, "C": 0.05, "B": 0.15, "beta": 0.2, "gamma": 0.15}
    for p, v in truth.items():
        assert got[p] == pytest.approx(v, rel=tol[p]), (p, got)


@pytest.mark.parametrize("name", ["pow3", "exponential", "logpower"])
def test_schedule_free_laws_recover_parameters(name):
    truth = TRUTH[name]
    got = _fit_shared(name, {"run": (curve(name, truth, STEPS, None, noise=1e-4), None)})
    for p, v in truth.items():
        assert got[p] == pytest.approx(v, rel=0.05, abs=0.02), (p, got)


def test_registry_lists_laws_and_rejects_unknown():
    assert {"momentum", "multipower", "pow3"} <= set(laws.available())
    assert "momentum" in laws.available(needs_lr=True) and "pow3" not in laws.available(needs_lr=True)
    with pytest.raises(KeyError, match="known"):
        laws.get("nope")


@pytest.mark.parametrize("name", ["momentum", "multipower"])
def test_annealing_amplitude_never_starts_where_its_gradient_vanishes(name):
    # a decaying run whose loss does not improve with the decay: the least-squares start for the
    # amplitude is <= 0, and a start at ~0 in log space could never grow (its gradient is ~0)
    lr = LR_RUNS["cosine"]
    h = RunHistory("r", STEPS, 3.0 + 0.001 * np.linspace(0, 1, len(STEPS)), lr_steps=np.arange(TOTAL + 1),
                   lr_values=lr)
    f = build_features([h], [STEPS])
    y = torch.tensor(h.values)[None]
    law = laws.get(name)
    starts = law.starts(f, y, n=3)[0]  # (S, p)
    amp = starts[:, law.params.index(law.amplitude)]
    theta = starts.clone()
    theta[:, law.params.index(law.amplitude)] = 0.0
    rows = f.rows(torch.zeros(len(starts), dtype=torch.long))
    effect = law.predict(theta, rows) - law.predict(starts, rows)  # what the amplitude takes off
    gain = effect.amax(1) - effect.amin(1)  # over the run (the multi-power LD starts below 0)
    assert torch.all(gain >= 0.0099 * y.min()), (amp, gain)


def test_multipower_blocks_follow_the_exact_double_sum(monkeypatch):
    """The default LR blocks reproduce the per-step sum on a long cosine, where blocks are widest."""
    total = 72000
    full = np.arange(total + 1)
    lr = cosine_lr(full, 3e-4, total, warmup=2000, final=0.1)
    pts = np.arange(2000, total + 1, 128)
    h = RunHistory("long", pts, np.ones(len(pts)), lr_steps=full, lr_values=lr)
    law = laws.get("multipower")
    theta = torch.tensor([[2.4, 0.65, 0.43, 520.0, 2.0, 0.6, 0.64]], dtype=torch.float64)
    blocked = law.predict(theta, build_features([h], [pts]))[0]
    monkeypatch.setattr(batch, "WARMUP_BLOCKS", 10**6)
    exact = law.predict(theta, build_features([h], [pts], max_blocks=10**6))[0]
    # blocks dated to their changes' weighted centre: 1.4e-4; to their start, 4.2e-4
    assert float((blocked / exact - 1).abs().mean()) < 2.5e-4
