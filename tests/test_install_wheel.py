"""The built wheel, installed into a fresh virtual environment, is a working `forecast`.

The wheel itself goes in with --no-deps; its dependencies (torch, mlflow, ...) come from this test
environment through a .pth line, because installing torch afresh would take minutes. Everything
`forecaster` is imported from the fresh environment, never from the checkout.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
STEP_TIMEOUT = 180  # seconds per subprocess: a hung build or import fails this test, not the whole suite
# what a source tree may hold that is no part of a build (virtual environments, earlier builds, demo output)
_NOT_SOURCE = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".forecast-demo", "mlruns", "wandb", "out")


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=STEP_TIMEOUT,
                          stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the 'build' package is missing (it comes with the dev extra: "
                                        "pip install -e '.[dev]'); cannot build the wheel")
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy: a build in the checkout would leave build/ and *.egg-info behind
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    # no isolation: the build backend (setuptools, wheel) comes from this environment, so the test
    # needs no package index
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", src], cwd=tmp)
    (whl,) = (tmp / "dist").glob("*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--no-cache-dir",
          "--disable-pip-version-check", "-q", wheel])
    # only after the install: with this environment on its path, pip would see the checkout's editable
    # install of the same name and version and take the wheel for already installed
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "zz_test_env_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(HOME=str(tmp / "home"), PYTHONNOUSERSITE="1", FORECASTER_DEVICE="cpu")
    (tmp / "home").mkdir()
    return {"venv": venv.resolve(), "bin": venv / "bin", "py": py, "env": env, "cwd": tmp}


def test_wheel_name_and_contents(wheel) -> None:
    assert wheel.name == f"{PROJECT['name'].replace('-', '_')}-{PROJECT['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"{PROJECT['name'].replace('-', '_')}-{PROJECT['version']}.dist-info"
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        metadata = z.read(f"{info}/METADATA").decode()
    for module in ("forecaster/cli.py", "forecaster/laws/multipower.py", "forecaster/scaling/cli.py",
                   "forecaster/py.typed", "forecaster_mlflow/__init__.py", "forecaster_wandb/tracker.py"):
        assert module in names, f"{module} missing from the wheel"
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/", "docs/")) for n in names)
    assert "forecast = forecaster.cli:main" in entry_points
    assert "mlflow = forecaster_mlflow:MlflowTracker" in entry_points
    assert "wandb = forecaster_wandb:WandbTracker" in entry_points
    assert f"Name: {PROJECT['name']}" in metadata
    assert "Provides-Extra: mlflow" in metadata and "Provides-Extra: wandb" in metadata
    # the install lines in the docs name the file this build makes
    for doc, extra in (("docs/mlflow.md", "mlflow"), ("docs/wandb.md", "wandb")):
        assert f"dist/{wheel.name}[{extra}]" in (ROOT / doc).read_text(), doc


def test_fresh_environment_imports_everything_from_the_wheel(fresh) -> None:
    probe = ("import json, importlib.metadata as m, forecaster, forecaster_mlflow, forecaster_wandb\n"
             f"eps = {{ep.name: ep.load().__module__ for ep in m.entry_points(group='forecaster.trackers')}}\n"
             "mods = {n: __import__(n).__file__ for n in eps.values()}\n"
             f"print(json.dumps({{'forecaster': forecaster.__file__, 'version': forecaster.__version__,\n"
             f"  'dist': m.version({PROJECT['name']!r}), 'eps': eps, 'mods': mods}}))")
    got = json.loads(_run([fresh["py"], "-c", probe], env=fresh["env"], cwd=fresh["cwd"]).stdout)
    inside = str(fresh["venv"]) + os.sep
    assert got["forecaster"].startswith(inside), got["forecaster"]
    assert not got["forecaster"].startswith(str(ROOT) + os.sep)
    assert got["version"] == got["dist"] == PROJECT["version"]
    assert set(got["eps"]) >= {"mlflow", "wandb"}
    assert all(path.startswith(inside) for path in got["mods"].values()), got["mods"]


def test_forecast_help_and_version(fresh) -> None:
    forecast = fresh["bin"] / "forecast"
    out = _run([forecast, "--help"], env=fresh["env"], cwd=fresh["cwd"]).stdout
    assert "predict" in out and "sync" in out and "scaling" in out
    out = _run([forecast, "--version"], env=fresh["env"], cwd=fresh["cwd"]).stdout
    assert out.strip() == f"forecast, version {PROJECT['version']}"
    # the tracker adapters are found through the wheel's entry points
    out = _run([forecast, "sync", "--help"], env=fresh["env"], cwd=fresh["cwd"]).stdout
    assert "mlflow, wandb" in out and "--wandb-dir" in out


def test_forecast_predict_from_the_wheel(fresh) -> None:
    total, peak, warmup = 1000, 3e-4, 100
    steps = np.arange(25, 301, 25)
    prog = np.clip((steps - warmup) / (total - warmup), 0, 1)
    lr = np.where(steps < warmup, peak * steps / warmup, peak * 0.5 * (1 + np.cos(np.pi * prog)))
    loss = 2.0 + 3.0 * (1 + np.cumsum(lr) * 25 / 0.05) ** -0.5
    src = fresh["cwd"] / "live.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "lr", "loss"])
        w.writerows(zip(steps.tolist(), lr.tolist(), loss.tolist()))
    out = fresh["cwd"] / "forecast.csv"
    _run([fresh["bin"] / "forecast", "predict", "--input", src, "--law", "momentum", "--device", "cpu",
          "--schedule", f"cosine(peak={peak}, warmup={warmup}, total={total})", "--output", out],
         env=fresh["env"], cwd=fresh["cwd"])
    rows = list(csv.DictReader(out.open()))
    assert [int(r["step"]) for r in rows] == list(range(325, total + 1, 25))
    p10, p50, p90 = (np.array([float(r[k]) for r in rows]) for k in ("p10", "p50", "p90"))
    assert np.isfinite(p50).all() and (p10 <= p50).all() and (p50 <= p90).all()
    assert p50[-1] < loss[-1]  # the cosine decay still to come lowers the loss
