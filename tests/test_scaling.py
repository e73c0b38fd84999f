"""Scaling laws: known parameters recovered from synthetic runs, exact sub-solvers, the optimal split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar, nnls

from forecaster.errors import InputError
from forecaster.scaling import ScalingPoints, fit_scaling
from forecaster.scaling.laws import chinchilla as ch
from forecaster.scaling.laws import overtrain as ot
from forecaster.scaling.lbfgs import lbfgs
from forecaster.scaling.varpro import nnls_normal

TRUTH = {"E": 1.7, "A": 420.0, "B": 1800.0, "alpha": 0.34, "beta": 0.37}


def synthetic(truth=TRUTH, noise=0.0, seed=0, sizes=(2e7, 6e7, 2e8, 6e8, 2e9), mults=(5, 10, 20, 40, 80, 160)):
    """A grid of runs (sizes x tokens-per-parameter) from the Chinchilla form, log-normal noise."""
    rng = np.random.default_rng(seed)
    N, M = (a.ravel() for a in np.meshgrid(np.array(sizes), np.array(mults, dtype=float)))
    D = N * M
    theta = np.array([truth[k] for k in ch.PARAMS])
    loss = ch.predict(theta, N, D) * np.exp(noise * rng.standard_normal(len(N)))
    return ScalingPoints(N=N, D=D, loss=loss)


@pytest.mark.parametrize("objective", ["mse", "huber-log"])
def test_chinchilla_recovers_known_parameters_exactly_without_noise(objective):
    fit = fit_scaling(synthetic(), law="chinchilla", objective=objective, n_boot=0, device="cpu")
    p = fit.params
    assert abs(p["alpha"] - TRUTH["alpha"]) < 1e-3
    assert abs(p["beta"] - TRUTH["beta"]) < 1e-3
    assert abs(p["E"] - TRUTH["E"]) < 1e-3
    assert p["A"] == pytest.approx(TRUTH["A"], rel=0.02)
    assert p["B"] == pytest.approx(TRUTH["B"], rel=0.02)
    assert fit.rss < 1e-8


@pytest.mark.parametrize("objective", ["mse", "huber-log"])
def test_chinchilla_with_noise_bootstrap_interval_covers_truth(objective):
    pts = synthetic(noise=0.004, seed=3)
    fit = fit_scaling(pts, law="chinchilla", objective=objective, n_boot=40, seed=1, device="cpu")
    assert fit.samples.shape == (40, 5)
    for k in ("E", "alpha", "beta"):
        lo, hi = fit.intervals[k]
        assert lo <= fit.params[k] <= hi
        # the truth lies within the interval widened by a little slack (40 replicates are few)
        width = hi - lo
        assert lo - 0.5 * width <= TRUTH[k] <= hi + 0.5 * width, (k, lo, hi)
        assert fit.stderr[k] > 0
    assert abs(fit.params["alpha"] - TRUTH["alpha"]) < 0.03


def test_sigma_weights_the_fit_and_widens_intervals():
    pts = synthetic(noise=0.0)
    # corrupt one point but declare it very uncertain: it must barely move the fit
    pts.loss[7] += 0.3
    sigma = np.full(len(pts), 0.002)
    sigma[7] = 5.0
    pts.sigma = sigma
    fit = fit_scaling(pts, law="chinchilla", objective="mse", n_boot=0, device="cpu")
    assert abs(fit.params["alpha"] - TRUTH["alpha"]) < 0.01
    unweighted = fit_scaling(ScalingPoints(N=pts.N, D=pts.D, loss=pts.loss), objective="mse", n_boot=0, device="cpu")
    assert abs(unweighted.params["alpha"] - TRUTH["alpha"]) > abs(fit.params["alpha"] - TRUTH["alpha"])
    # redrawing losses within a large sigma makes the bootstrap interval wider
    tight = ScalingPoints(N=pts.N, D=pts.D, loss=synthetic().loss, sigma=np.full(len(pts), 1e-4))
    loose = ScalingPoints(N=pts.N, D=pts.D, loss=synthetic().loss, sigma=np.full(len(pts), 0.02))
    w_t = np.diff(fit_scaling(tight, objective="mse", n_boot=30, device="cpu").intervals["alpha"])[0]
    w_l = np.diff(fit_scaling(loose, objective="mse", n_boot=30, device="cpu").intervals["alpha"])[0]
    assert w_l > 5 * w_t


def test_compute_optimal_split_minimises_loss_at_fixed_compute():
    theta = np.array([TRUTH[k] for k in ch.PARAMS])
    for C in (1e20, 5.76e23, 1e26):
        n_opt, d_opt = ch.compute_optimal(theta, C)
        assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-10)
        res = minimize_scalar(lambda lnN: ch.predict(theta, np.exp(lnN), C / (6 * np.exp(lnN))),
                              bounds=(np.log(1e6), np.log(1e14)), method="bounded",
                              options={"xatol": 1e-10})
        assert np.exp(res.x) == pytest.approx(n_opt, rel=1e-4)


def test_fit_reports_compute_optimal_split_in_raw_units_whatever_the_fit_units():
    pts = synthetic()
    raw = fit_scaling(pts, objective="mse", n_boot=0, device="cpu", budgets=[1e22])
    scaled = fit_scaling(pts, objective="mse", n_boot=0, device="cpu", budgets=[1e22], units=(1e6, 1e9))
    assert scaled.params["A"] == pytest.approx(raw.params["A"] * 1e6 ** -raw.params["alpha"], rel=1e-3)
    a, b = raw.derived["compute_optimal"][0], scaled.derived["compute_optimal"][0]
    assert a["N_opt"]["value"] == pytest.approx(b["N_opt"]["value"], rel=1e-3)
    assert a["tokens_per_param"]["value"] == pytest.approx(b["tokens_per_param"]["value"], rel=1e-3)
    assert scaled.predict(N=1e9, D=2e10)["value"] == pytest.approx(raw.predict(N=1e9, D=2e10)["value"], rel=1e-6)


def test_overtrain_law_recovers_parameters_and_matches_its_chinchilla_form():
    truth = np.array([1.9, 150.0, 300.0, 0.12])  # E, a, b, eta
    rng = np.random.default_rng(0)
    N = np.array([1e7, 8e7, 1.5e8, 4e8, 1e7, 8e7])
    M = np.array([20, 20, 20, 20, 320, 80.0])
    D = N * M
    loss = ot.predict(truth, N, D)
    theta_ch = ot.to_chinchilla(truth)
    assert np.allclose(ch.predict(theta_ch, N, D), loss)
    fit = fit_scaling(ScalingPoints(N=N, D=D, loss=loss + 1e-6 * rng.standard_normal(6)),
                      law="overtrain", n_boot=0, device="cpu")
    assert fit.params["eta"] == pytest.approx(truth[3], abs=2e-3)
    assert fit.params["E"] == pytest.approx(truth[0], abs=0.02)
    big = fit.predict(N=7e9, D=1.4e11)["value"]
    assert big == pytest.approx(ot.predict(truth, 7e9, 1.4e11), rel=2e-3)


def test_downstream_law_recovers_parameters():
    loss = np.array([5.5, 4.6, 3.9, 3.5, 3.2, 2.9, 2.7])
    truth = np.array([0.85, 2.2, 0.7])
    err = truth[0] - truth[1] * np.exp(-truth[2] * loss)
    fit = fit_scaling(ScalingPoints(N=np.ones(7), D=np.ones(7), loss=loss, error=err),
                      law="downstream", n_boot=20, device="cpu")
    assert fit.params["gamma"] == pytest.approx(0.7, abs=1e-3)
    assert fit.params["eps"] == pytest.approx(0.85, abs=1e-3)
    assert fit.params["k"] == pytest.approx(2.2, rel=1e-2)
    assert fit.predict(loss=2.5)["value"] == pytest.approx(truth[0] - truth[1] * np.exp(-truth[2] * 2.5), abs=1e-4)


def test_batched_nnls_matches_scipy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 30, 3))
    y = rng.standard_normal((200, 30))
    G = torch.tensor(np.einsum("bip,biq->bpq", X, X))
    h = torch.tensor(np.einsum("bip,bi->bp", X, y))
    c = torch.tensor((y * y).sum(1))
    theta, rss = nnls_normal(G, h, c, (True, True, True))
    for b in range(200):
        ref, rnorm = nnls(X[b], y[b])
        assert np.allclose(theta[b].numpy(), ref, atol=1e-8)
        assert rss[b].item() == pytest.approx(rnorm ** 2, rel=1e-8, abs=1e-10)
    # a free first coefficient (intercept) is never clipped
    theta_f, _ = nnls_normal(G, h, c, (False, True, True))
    assert (theta_f[:, 0] < 0).any()


def test_batched_lbfgs_solves_independent_problems():
    centers = torch.tensor([[1.0, 1.0], [2.0, 4.0], [-1.0, 1.0]], dtype=torch.float64)

    def rosen(x, rows):
        a = centers[:, 0] if rows is None else centers[rows, 0]
        return (a - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2

    x, f, it = lbfgs(rosen, torch.zeros(3, 2, dtype=torch.float64), max_iter=500)
    target = torch.stack((centers[:, 0], centers[:, 0] ** 2), -1)
    assert torch.allclose(x, target, atol=1e-5)
    assert (f < 1e-10).all()


def test_hoffmann_start_grid_is_the_published_4500_and_agrees_with_varpro():
    starts = ch.hoffmann_starts()
    assert starts.shape == (4500, 5)
    pts = synthetic(noise=0.002, seed=5)
    y = torch.as_tensor(pts.loss)
    # a sample of the starts keeps the test fast; the benchmark runs all 4,500
    theta, f, allf = ch.fit_hoffmann_grid(pts.N, pts.D, y, torch.ones_like(y), max_iter=400,
                                          starts=starts[::150])
    ours = fit_scaling(pts, objective="huber-log", n_boot=0, device="cpu")
    assert float(f) >= ours.objective_value * (1 - 1e-9)  # VarPro start is never beaten
    assert abs(float(theta[3]) - ours.params["alpha"]) < 0.01


def test_bad_points_raise_input_error():
    good = synthetic()
    with pytest.raises(InputError, match="parameters but only"):
        fit_scaling(good.subset(np.arange(4)), n_boot=0)
    with pytest.raises(InputError, match="one model size"):
        fit_scaling(ScalingPoints(N=np.full(8, 1e8), D=np.geomspace(1e9, 1e11, 8), loss=np.linspace(3, 2, 8)), n_boot=0)
    bad = synthetic()
    bad.D[3] = -1
    with pytest.raises(InputError, match="D must be positive"):
        fit_scaling(bad, n_boot=0)
    bad = synthetic()
    bad.loss[2] = np.nan
    with pytest.raises(InputError, match="loss has 1 missing"):
        fit_scaling(bad, n_boot=0)
    with pytest.raises(InputError, match="unknown law"):
        fit_scaling(good, law="kaplan")
    with pytest.raises(InputError, match="error column"):
        fit_scaling(good, law="downstream")


def test_fit_scaling_accepts_plain_arrays_with_sigma():
    pts = synthetic()
    fit = fit_scaling({"N": pts.N, "C": pts.C, "loss": pts.loss, "sigma": np.full(len(pts), 0.01)},
                      objective="mse", n_boot=5, device="cpu")
    assert abs(fit.params["alpha"] - TRUTH["alpha"]) < 1e-3
    assert fit.samples.shape == (5, 5)
