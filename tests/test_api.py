"""The public Python API (docs/api.md): the three-line path, settings, errors, results and the notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import forecaster
from forecaster import Forecaster, ForecastSet, InputError, NotFittedError, RunHistory, clone, read_histories

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "examples" / "data" / "luo25m_family.csv"


@pytest.fixture(scope="module")
def default():
    """The three lines, from the CSV: the forecast set, its frame and the fitted estimator."""
    fc = Forecaster(device="cpu")
    forecasts = fc.fit_predict(read_histories(CSV))
    return fc, forecasts, forecasts.to_frame()


def test_three_lines_csv_to_frame(default):
    fc, forecasts, frame = default
    assert isinstance(forecasts, ForecastSet) and len(forecasts) == 3
    assert list(frame.columns) == ["run", "group", "step", "lr", "p50", "p10", "p90"]
    assert set(frame["run"]) == {"wsd_20000_24000"} and len(frame) == len(forecasts[2].steps) > 0
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    final = forecasts.final
    assert np.isnan(final[:2]).all() and final[2] == pytest.approx(frame["p50"].iloc[-1])


def test_frame_equals_csv_output(default, tmp_path):
    """The frame holds what `forecast predict` writes for the same input and settings."""
    from forecaster import csvio

    _, forecasts, frame = default
    with open(tmp_path / "out.csv", "w", newline="") as fh:
        csvio.write_forecasts(list(forecasts), fh)
    import pandas as pd

    written = pd.read_csv(tmp_path / "out.csv")
    for col in ("step", "lr", "p50", "p10", "p90"):
        np.testing.assert_allclose(written[col], frame[col], rtol=1e-7)


def test_fit_returns_self_and_fitted_attributes_end_in_underscore():
    runs = read_histories(CSV)
    fc = Forecaster(law="momentum", device="cpu")
    assert fc.fit(runs) is fc
    assert fc.histories_ is not runs and [h.run for h in fc.histories_] == [h.run for h in runs]
    fitted = {k for k in vars(fc) if k not in fc.get_params()}
    assert fitted and all(k.endswith("_") for k in fitted)


def test_diagnostics_per_run(default):
    _, forecasts, _ = default
    assert [d.run for d in forecasts.diagnostics] == forecasts.runs
    for d in forecasts.diagnostics:
        assert d.law in ("momentum", "multipower") and d.skipped is None
        assert d.converged is True and 0 < d.iterations <= 60


def test_predict_before_fit_is_a_clear_error():
    fc = Forecaster()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        fc.predict()
    with pytest.raises(NotFittedError):
        fc.predict_schedules("run", [])


@pytest.mark.parametrize("settings, message", [
    ({"law": "nope"}, "law 'nope'"), ({"holdout": 2.0}, "holdout=2.0"), ({"quantiles": (0.5, 1.5)}, "quantiles"),
    ({"samples": 1}, "samples=1"), ({"warmup": "cubic"}, "warmup 'cubic'"), ({"misfit": -1}, "misfit=-1"),
    ({"selfcal": "yes"}, "selfcal=.yes."),
])
def test_fit_validates_settings_in_one_line(settings, message):
    fc = Forecaster(**settings)  # the constructor only stores
    with pytest.raises(InputError, match=message) as err:
        fc.fit([RunHistory("a", np.arange(10), np.linspace(3, 2, 10))])
    assert "\n" not in str(err.value)


def test_fit_rejects_what_it_cannot_read():
    with pytest.raises(InputError, match="cannot fit a dict"):
        Forecaster().fit({"step": [1, 2]})
    with pytest.raises(InputError, match="expected RunHistory"):
        Forecaster().fit([1, 2])


def test_get_params_set_params_clone_round_trip():
    fc = Forecaster(law="momentum", seed=3, quantiles=(0.05, 0.5, 0.95), misfit=2.0)
    params = fc.get_params()
    assert params["law"] == "momentum" and params["misfit"] == 2.0 and params["inflation"] == 1.0
    assert set(params) == set(Forecaster.param_names()) and len(params) == 16
    copy = clone(fc)
    assert copy is not fc and copy.get_params() == params
    assert Forecaster(**params).get_params() == params
    assert copy.set_params(seed=4) is copy and copy.seed == 4 and fc.seed == 3
    assert clone(fc, follow_siblings=False).follow_siblings is False
    with pytest.raises(InputError, match="no setting 'sead'"):
        fc.set_params(sead=1)
    assert repr(fc) == "Forecaster(law='momentum', seed=3, quantiles=(0.05, 0.5, 0.95), misfit=2.0)"


def test_clone_is_unfitted():
    fc = Forecaster(law="momentum", device="cpu").fit(read_histories(CSV))
    with pytest.raises(NotFittedError):
        clone(fc).predict()


def test_quantile_levels_are_keyed_by_level(default):
    """quantiles=(0.05, 0.5, 0.95): the 5 % quantile under 0.05 (column p5), never in the p10 field,
    which keeps the 10 % quantile of the band."""
    _, base, _ = default
    wide = Forecaster(device="cpu", quantiles=(0.05, 0.5, 0.95)).fit_predict(read_histories(CSV))
    f, b = wide[2], base[2]
    assert list(f.quantiles) == [0.05, 0.5, 0.95]
    np.testing.assert_allclose(f.p10, b.p10, rtol=1e-12)
    np.testing.assert_allclose(f.p50, b.p50, rtol=1e-12)
    assert np.all(f.quantile(0.05) < f.p10) and np.all(f.quantile(0.95) > f.p90)
    np.testing.assert_array_equal(f.quantile(0.1), f.p10)
    with pytest.raises(KeyError, match="quantile 0.2 was not computed"):
        f.quantile(0.2)
    assert list(wide.to_frame().columns) == ["run", "group", "step", "lr", "p50", "p5", "p95"]
    assert list(b.quantiles) == [0.1, 0.5, 0.9]


def test_extra_levels_where_the_annealing_response_is_drawn():
    """A lone run before its decay: its quantiles come from the draws themselves (`bands`), every
    level asked for among them, in order."""
    lone = read_histories(CSV)[2:]
    (f,) = Forecaster(law="momentum", device="cpu", quantiles=(0.05, 0.25, 0.5, 0.95)).fit_predict(lone)
    assert any("not identifiable" in n for n in f.notes)
    q = [f.quantile(level) for level in (0.05, 0.1, 0.25, 0.5, 0.9, 0.95)]
    assert all(np.all(lo <= hi) for lo, hi in zip(q, q[1:])) and q[0][-1] < q[1][-1] < q[2][-1]


def test_dataframe_and_arrow_input_equal_csv_input(default):
    pd = pytest.importorskip("pandas")
    pa_csv = pytest.importorskip("pyarrow.csv")
    from_csv = read_histories(CSV)
    for table in (pd.read_csv(CSV), pa_csv.read_csv(CSV)):
        hist = read_histories(table)
        assert [(h.run, h.group) for h in hist] == [(h.run, h.group) for h in from_csv]
        for a, b in zip(hist, from_csv):
            for name in ("steps", "values", "lr_steps", "lr_values", "horizon"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    _, _, frame = default
    from_frame = Forecaster(device="cpu").fit_predict(pd.read_csv(CSV)).to_frame()
    pd.testing.assert_frame_equal(from_frame, frame)


def test_table_errors_name_the_row():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"step": [0, 1, -2], "loss": [3.0, 2.9, 2.8]})
    with pytest.raises(InputError, match=r"^DataFrame row 2: negative step -2$"):
        read_histories(frame)
    with pytest.raises(InputError, match="missing column step"):
        read_histories(pd.DataFrame({"loss": [1.0]}))
    (h,) = read_histories(pd.DataFrame({"step": [0, 1], "loss": [3.0, 2.9]}), name="mine")
    assert (h.run, h.group, h.meta["source"], h.meta["row"]) == ("mine", "mine", "DataFrame", 0)


def test_import_is_cheap_and_names_are_public():
    code = ("import sys, forecaster; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; "
            "forecaster.Forecaster; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_reading_a_csv_leaves_pandas_unimported(tmp_path):
    """The Arrow reader maps its columns to numpy itself: importing pandas was half a second of every call."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "runs.csv"
    path.write_text("run,step,lr,loss\n" + "".join(f"a,{s},0.001,{3 + 1 / s}\n" for s in range(1, 50)))
    code = ("import sys; from forecaster import read_histories; h = read_histories(sys.argv[1]); "
            "assert len(h) == 1 and len(h[0].steps) == 49; assert 'pyarrow' in sys.modules; "
            "assert 'pandas' not in sys.modules, 'pandas imported'")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)
    for name in forecaster.__all__:
        assert getattr(forecaster, name) is not None
    assert forecaster.parse_schedule("cosine(peak=3e-4, total=1000)").total == 1000
    with pytest.raises(AttributeError):
        forecaster.nope  # noqa: B018


def test_band_settings_are_not_read_from_the_environment(monkeypatch):
    """Band scales are settings; the CLI alone takes environment defaults for them."""
    from forecaster import predict_cli

    monkeypatch.setenv("FORECASTER_MISFIT", "3.5")
    assert Forecaster().misfit == 2.5
    assert predict_cli._forecaster("auto", "cpu", 0).misfit == 3.5
    monkeypatch.setenv("FORECASTER_MISFIT", "lots")
    with pytest.raises(InputError, match=r"\$FORECASTER_MISFIT must be a number"):
        predict_cli._forecaster("auto", "cpu", 0)


def test_notebook_code_cells_run(monkeypatch, capsys):
    """Every code cell of examples/notebook.ipynb, in order, in one namespace (no Jupyter needed)."""
    nb = json.loads((ROOT / "examples" / "notebook.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert "read_histories(\"data/luo25m_family.csv\")" in cells[0] and len(cells[0].splitlines()) == 4
    monkeypatch.chdir(ROOT / "examples")
    monkeypatch.setenv("FORECASTER_DEVICE", "cpu")
    ns: dict = {}
    for cell in cells:
        exec(compile(cell, "notebook.ipynb", "exec"), ns)
    assert isinstance(ns["forecasts"], ForecastSet) and "wsd_20000_24000" in capsys.readouterr().out


def test_the_command_not_the_library_turns_numpy_huge_page_advice_off(tmp_path):
    """`forecast` owns its process and sets it up against page-fault stalls; `import forecaster` does not."""
    code = ("from numpy._core.multiarray import _set_madvise_hugepage as hp; import forecaster.cli as c; "
            "from click.testing import CliRunner; assert hp(True) is True; "
            "r = CliRunner().invoke(c.main, ['predict', '--input', 'missing.csv']); "
            "assert r.exit_code == 2, r.output; assert hp(True) is False")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])})
