"""`forecast scaling fit|predict`: the JSON contract, predictions from a saved fit, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forecaster.cli import main
from forecaster.scaling.laws import chinchilla as ch
from forecaster.scaling.laws import overtrain as ot

THETA = np.array([1.7, 420.0, 1800.0, 0.34, 0.37])


def run(*args):
    return CliRunner().invoke(main, ["scaling", *map(str, args)])


def write(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def runs_csv(tmp_path):
    N, M = (a.ravel() for a in np.meshgrid([2e7, 6e7, 2e8, 6e8], [5.0, 20.0, 80.0]))
    D = N * M
    loss = ch.predict(THETA, N, D) * np.exp(0.003 * np.random.default_rng(0).standard_normal(len(N)))
    return write(tmp_path / "runs.csv", ["N", "C", "loss", "sigma"],
                 [(n, 6 * n * d, lo, 0.01) for n, d, lo in zip(N, D, loss)])


def test_fit_json_contract_and_predict_from_saved_fit(runs_csv, tmp_path):
    res = run("fit", "--input", runs_csv, "--law", "chinchilla", "--objective", "mse", "--boot", 30,
              "--budget", 1e21, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["law"] == "chinchilla" and doc["objective"] == "mse"
    assert set(doc["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(doc["intervals"]) == set(doc["params"])
    for k, (lo, hi) in doc["intervals"].items():
        assert lo <= hi
    assert doc["n_points"] == 12 and doc["n_boot"] == 30
    assert abs(doc["params"]["alpha"] - 0.34) < 0.05
    opt = doc["derived"]["compute_optimal"][0]
    assert opt["C"] == 1e21 and opt["N_opt"]["lo"] <= opt["N_opt"]["value"] <= opt["N_opt"]["hi"]
    assert len(doc["samples"]["E"]) == 30
    fit_path = tmp_path / "fit.json"
    fit_path.write_text(res.stdout)

    res = run("predict", "--fit", fit_path, "--n", 1e9, "--d", 2e10, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    loss = out["run"]["loss"]
    assert loss["lo"] <= loss["value"] <= loss["hi"]
    assert loss["value"] == pytest.approx(ch.predict(THETA, 1e9, 2e10), rel=0.02)

    res = run("predict", "--fit", fit_path, "--budget", 1e22)
    assert res.exit_code == 0, res.output
    assert "N_opt" in res.stdout and "tokens_per_param" in res.stdout

    res = run("fit", "--input", runs_csv, "--objective", "huber-log", "--boot", 0, "--plot", tmp_path / "f.png")
    assert res.exit_code == 0, res.output
    assert "alpha" in res.stdout and (tmp_path / "f.png").stat().st_size > 1000


def test_overtrain_and_chained_downstream(tmp_path):
    truth = np.array([1.9, 150.0, 300.0, 0.12])
    N = np.array([1e7, 8e7, 1.5e8, 4e8, 1e7, 1.4e9])
    M = np.array([20, 20, 20, 20, 320, 20.0])
    loss = ot.predict(truth, N, N * M)
    err = 0.85 - 2.2 * np.exp(-0.7 * loss)
    p = write(tmp_path / "g.csv", ["N", "M", "loss", "error"], zip(N, M, loss, err))
    assert run("fit", "--input", p, "--law", "overtrain", "--boot", 0, "--output", tmp_path / "o.json").exit_code == 0
    res = run("fit", "--input", p, "--law", "downstream", "--boot", 10, "--output", tmp_path / "d.json")
    assert res.exit_code == 0, res.output
    res = run("predict", "--fit", tmp_path / "o.json", "--n", 7e9, "--m", 20, "--error-fit", tmp_path / "d.json", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["run"]
    want = ot.predict(truth, 7e9, 1.4e11)
    assert out["loss"]["value"] == pytest.approx(want, rel=0.01)
    assert out["error"]["value"] == pytest.approx(0.85 - 2.2 * np.exp(-0.7 * want), abs=0.01)


def _bad(tmp_path, name, header, rows, *extra):
    p = write(tmp_path / name, header, rows)
    return run("fit", "--input", p, "--boot", 0, *extra)


@pytest.mark.parametrize("case,header,rows,message", [
    ("few", ["N", "D", "loss"], [(1e8, 2e9, 3.0), (2e8, 4e9, 2.8), (4e8, 8e9, 2.6)], "only 3 point"),
    ("nonpos", ["N", "D", "loss"], [(1e8, 2e9, 3.0), (2e8, 4e9, 2.8), (4e8, 8e9, 0), (8e8, 1e10, 2.5),
                                    (1e9, 2e10, 2.4), (2e9, 3e10, 2.3)], "loss must be positive"),
    ("onesize", ["N", "D", "loss"], [(1e8, d, 3.0 - 0.1 * i) for i, d in enumerate([1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10])],
     "one model size"),
    ("nan", ["N", "D", "loss"], [(1e8, 2e9, 3.0), (2e8, 4e9, "nan"), (4e8, 8e9, 2.6), (8e8, 1e10, 2.5),
                                 (1e9, 2e10, 2.4), (2e9, 3e10, 2.3)], "missing or non-finite"),
    ("nocol", ["N", "loss"], [(1e8, 3.0)] * 6, "needs a D"),
    ("noloss", ["N", "D"], [(1e8, 1e9)] * 6, "no loss column"),
    ("text", ["N", "D", "loss"], [(1e8, 2e9, "abc")] * 6, "not a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, header, rows, message):
    res = _bad(tmp_path, f"{case}.csv", header, rows)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output


def test_missing_files_and_bad_fit_json(tmp_path):
    res = run("fit", "--input", tmp_path / "nope.csv")
    assert res.exit_code == 2 and "not found" in res.stderr
    res = run("predict", "--fit", tmp_path / "nope.json", "--n", 1e9, "--d", 1e10)
    assert res.exit_code == 2 and "not found" in res.stderr
    (tmp_path / "bad.json").write_text("{not json")
    res = run("predict", "--fit", tmp_path / "bad.json", "--n", 1e9, "--d", 1e10)
    assert res.exit_code == 2 and res.stderr.startswith("error: ")
    (tmp_path / "x.json").write_text(json.dumps({"law": "chinchilla"}))
    res = run("predict", "--fit", tmp_path / "x.json", "--n", 1e9, "--d", 1e10)
    assert res.exit_code == 2 and "not a scaling fit" in res.stderr


def test_predict_argument_errors(runs_csv, tmp_path):
    assert run("fit", "--input", runs_csv, "--objective", "mse", "--boot", 0, "--output", tmp_path / "f.json").exit_code == 0
    res = run("predict", "--fit", tmp_path / "f.json", "--n", 1e9)
    assert res.exit_code == 2 and "exactly one of --d" in res.stderr
    res = run("predict", "--fit", tmp_path / "f.json")
    assert res.exit_code == 2 and res.stderr.startswith("error: ")


def test_real_process_prints_no_traceback(tmp_path):
    p = write(tmp_path / "few.csv", ["N", "D", "loss"], [(1e8, 2e9, 3.0)])
    proc = subprocess.run([sys.executable, "-m", "forecaster.cli", "scaling", "fit", "--input", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
