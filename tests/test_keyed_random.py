"""Keyed draws: the same key gives the same numbers in any batch; they look like the distribution."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from forecaster import keyed_random as kr


def test_a_keys_draws_do_not_depend_on_the_other_keys_in_the_batch() -> None:
    alone = kr.normal(kr.keys(["run-b"], seed=0), 100, 3)
    k = kr.keys(["run-a", "run-b", "run-c"], seed=0)
    batch = kr.normal(k, 100, 3)
    assert torch.equal(batch[..., 1:2], alone)
    assert not torch.equal(batch[..., 0], batch[..., 1])
    assert not torch.equal(kr.normal(kr.keys(["run-b"], seed=1), 100, 3), alone)
    assert not torch.equal(kr.normal(kr.keys(["run-b"], seed=0, salt="other"), 100, 3), alone)
    # nor on the width or the chunk they are asked for in
    assert torch.equal(kr.normal(k, 100, 5)[:, :3], batch)
    assert torch.equal(kr.normal(k, 40, 3, start=60), batch[60:])


def test_draws_follow_their_distribution() -> None:
    z = kr.normal(kr.keys([f"r{i}" for i in range(50)], seed=3), 400).numpy().ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    u = kr.uniform(kr.keys(["x"], seed=0), 20_000).numpy().ravel()
    assert 0 < u.min() and u.max() < 1 and stats.kstest(u, "uniform").pvalue > 1e-3
    # neighbouring counters and keys are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03


def test_permutations_are_permutations_per_key() -> None:
    p = kr.permutation(kr.keys(["a", "b"], seed=0), 50)
    assert p.shape == (50, 2)
    for j in range(2):
        assert sorted(p[:, j].tolist()) == list(range(50))
    assert not torch.equal(p[:, 0], p[:, 1])
