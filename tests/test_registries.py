"""Laws and scaling laws are found automatically: a new one is one file, in the package or a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import forecaster.laws as laws
from forecaster.batch import build_features
from forecaster.fit import fit_groups
from forecaster.histories import RunHistory
from forecaster.laws.base import REGISTRY, Law
from forecaster.scaling import laws as scaling_laws

# a schedule-free law nobody ships: L = c + a / (1 + b t)
HYPERBOLIC = '''
import torch

from forecaster.laws.base import PositiveLaw, grid_starts, register


{decorator}class Hyperbolic(PositiveLaw):
    """L = c + a / (1 + b t)."""

    name = "hyperbolic"
    params = ("c", "a", "b")
    needs_lr = False

    def predict(self, theta, f):
        c, a, b = theta.unbind(-1)
        return c[:, None] + a[:, None] / (1.0 + b[:, None] * f.t)

    def starts(self, f, y, n=3):
        tmax = (f.t * f.mask).amax(1).clamp_min(1.0)
        rel = torch.exp(torch.linspace(-3.0, 3.0, 24, dtype=y.dtype, device=y.device))
        bs, c = grid_starts(
            lambda r: torch.stack([torch.ones_like(f.t), 1.0 / (1.0 + (r / tmax)[:, None] * f.t)], -1), rel, f, y, n)
        return torch.stack([c[..., 0].clamp_min(1e-3), c[..., 1].clamp_min(1e-6), bs / tmax[:, None]], -1)
'''

# a scaling law nobody ships: Chinchilla with one exponent for N and D
TIED = '''
import numpy as np
import torch

from forecaster.scaling.laws import chinchilla as ch
from forecaster.scaling.laws.base import LossLaw


class Tied(LossLaw):
    """L = E + A N^-alpha + B D^-alpha."""

    name = "tied"
    params = ("E", "A", "B", "alpha")
    formula = "L = E + A N^-alpha + B D^-alpha"
    reference = "a test"
    default_objective = "mse"
    zero_bound = ("E", "A", "B")

    def fit_data(self, data, objective):
        theta, val = ch.varpro_mse(data, tied=True) if objective == "mse" else ch.fit_huber_log(data, tied=True)
        return theta[:, :4], val

    def chinchilla_form(self, theta):
        return np.concatenate([theta, theta[..., 3:4]], -1)

    def predict(self, theta, *inputs):
        return ch.predict(self.chinchilla_form(theta), *inputs)

    def split(self, theta, C):
        return ch.compute_optimal(self.chinchilla_form(theta), C)
'''

STEPS = np.arange(10, 2001, 10)
TRUTH = (1.0, 2.0, 0.01)  # c, a, b


def _fit_hyperbolic() -> list[float]:
    y = TRUTH[0] + TRUTH[1] / (1.0 + TRUTH[2] * STEPS)
    f = build_features([RunHistory("r", STEPS, y)], [STEPS])
    fit = fit_groups(laws.get("hyperbolic"), f, torch.tensor(y)[None], torch.arange(1)[None], max_iter=100)
    return fit.theta()[0, 0].tolist()


def test_law_file_added_to_the_package_is_picked_up(tmp_path, monkeypatch):
    (tmp_path / "hyperbolic.py").write_text(HYPERBOLIC.format(decorator="@register\n"))
    monkeypatch.setattr(laws, "__path__", [*laws.__path__, str(tmp_path)])
    monkeypatch.setattr(REGISTRY, "_items", dict(REGISTRY._items))  # the other tests keep the shipped laws
    try:
        laws.discover()
        assert "hyperbolic" in laws.available(needs_lr=False)
        assert "hyperbolic" in laws.automatic(needs_lr=False)
        assert _fit_hyperbolic() == pytest.approx(TRUTH, rel=1e-3)
    finally:
        sys.modules.pop("forecaster.laws.hyperbolic", None)
        if hasattr(laws, "hyperbolic"):
            delattr(laws, "hyperbolic")
        monkeypatch.undo()
    assert "hyperbolic" not in laws.available()


def _plugin(tmp_path) -> dict[str, str]:
    """A distribution in tmp_path (on PYTHONPATH) registering one law of each kind by entry point."""
    (tmp_path / "hyperbolic_law.py").write_text(HYPERBOLIC.format(decorator=""))
    (tmp_path / "tied_law.py").write_text(TIED)
    info = tmp_path / "extra_laws-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-laws\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[forecaster.laws]\nhyperbolic = hyperbolic_law:Hyperbolic\n\n"
        "[forecaster.scaling_laws]\ntied = tied_law:Tied\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_plugin_laws_come_in_through_entry_points(tmp_path):
    env = _plugin(tmp_path)
    probe = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.getcwd()!r})
        from forecaster import laws
        from forecaster.scaling import laws as scaling_laws
        from tests.test_registries import _fit_hyperbolic
        print(json.dumps({{"laws": laws.available(needs_lr=False), "scaling": scaling_laws.available(),
                          "theta": _fit_hyperbolic()}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert "hyperbolic" in got["laws"]
    assert got["scaling"] == ["chinchilla", "overtrain", "tied", "downstream"]
    assert got["theta"] == pytest.approx(TRUTH, rel=1e-3)


def test_plugin_scaling_law_fits_from_the_cli(tmp_path):
    env = _plugin(tmp_path)
    N, M = (a.ravel() for a in np.meshgrid([2e7, 6e7, 2e8, 6e8, 2e9], [5.0, 20.0, 80.0]))
    D = N * M
    loss = 1.7 + 420.0 * N ** -0.35 + 1800.0 * D ** -0.35
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n" + "".join(f"{n},{d},{lo}\n" for n, d, lo in zip(N, D, loss)))
    out = subprocess.run([sys.executable, "-m", "forecaster.cli", "scaling", "fit", "--input", str(csv), "--law",
                          "tied", "--boot", "0", "--budget", "1e21", "--json"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["law"] == "tied" and doc["objective"] == "mse"
    assert doc["params"]["alpha"] == pytest.approx(0.35, abs=1e-3)
    assert doc["params"]["E"] == pytest.approx(1.7, abs=1e-3)
    assert doc["derived"]["compute_optimal"][0]["N_opt"]["value"] > 0
    assert doc["derived"]["exponents"]["a"]["value"] == pytest.approx(0.5)


def test_a_law_missing_an_abstract_method_cannot_register():
    class Half(Law):
        name = "half"
        params = ("c",)

        def natural(self, u):
            return u

        def unconstrained(self, theta):
            return theta

        def predict(self, theta, f):
            return theta

    with pytest.raises(TypeError, match="starts"):
        laws.register(Half)
    assert "half" not in laws.available()


def test_scaling_laws_declare_what_the_engine_asks_of_them():
    assert scaling_laws.available() == ["chinchilla", "overtrain", "downstream"]
    assert scaling_laws.available(predicts="loss") == ["chinchilla", "overtrain"]
    ch, dn = scaling_laws.get("chinchilla"), scaling_laws.get("downstream")
    assert (ch.default_objective, dn.default_objective) == ("huber-log", "mse")
    assert ch.needs_size and not dn.needs_size and dn.needs == ("loss", "error")
    with pytest.raises(KeyError, match="known"):
        scaling_laws.get("kaplan")


def test_group_fit_reports_convergence_and_iterations():
    y = TRUTH[0] + TRUTH[1] / (1.0 + TRUTH[2] * STEPS)
    f = build_features([RunHistory("r", STEPS, y), RunHistory("s", STEPS, 1.1 * y)], [STEPS] * 2)
    yy = torch.tensor(np.stack([y, 1.1 * y]))
    fit = fit_groups(laws.get("pow3"), f, yy, torch.arange(2)[:, None], max_iter=60)
    assert fit.converged.tolist() == [True, True]
    assert all(0 < n < 60 for n in fit.iterations.tolist())
    short = fit_groups(laws.get("pow3"), f, yy, torch.arange(2)[:, None], max_iter=2)
    assert short.converged.tolist() == [False, False] and short.iterations.tolist() == [2, 2]
    assert torch.equal(fit_groups(laws.get("pow3"), f, yy, torch.arange(2)[:, None], max_iter=60).x, fit.x)


def test_a_second_law_may_not_take_a_registered_name():
    class Pow3(type(laws.get("pow3"))):
        pass

    with pytest.raises(ValueError, match="already registered"):
        laws.register(Pow3)
    assert type(laws.get("pow3")).__module__ == "forecaster.laws.pow3"
