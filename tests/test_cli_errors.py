"""Every exit is the documented one: bad input ends with one `error:` line and exit code 2.

The process-level tests run the command as a user does, because what they guard against happens
after the command returned: an abort while the interpreter shuts down (exit 134, "terminate
called without an active exception") used to follow the error line in about one run in five.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forecaster import laws, trackers
from forecaster.cli import main
from forecaster.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _history(path: Path, scale: float = 1.0, future: bool = True, header: str = "step,loss,lr") -> Path:
    rows = [header] + [f"{10 * s},{scale * 3.0 * s ** -0.3!r},1e-3" for s in range(1, 61)]
    if future:
        rows += [f"{10 * s},,1e-3" for s in range(61, 81)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a bad-input exit; fails on anything else."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "terminate called" not in proc.stderr
    return lines[0]


# -- the abort at exit, 50 times per path -----------------------------------------------------------
# What a failed read leaves behind is Arrow's worker thread dropping its reference to the input
# after the exception reached Python; that raced with the interpreter's shutdown. A process of the
# full command costs 2.5 s of torch import, so each try here runs the same read-and-report code
# (csvio and one_line_errors, what `forecast predict` calls first) in a bare interpreter, 8 at a
# time on however many cores there are: the crowding is what lets the worker thread fall behind.
# A long GIL switch interval keeps the main thread from handing the GIL over before it exits.
# Before the fix 9 of these 200 tries aborted on a 2-core machine (and 3-6 of 20 runs of the full
# command); at that rate 200 clean tries leave a regression unseen with a chance of about 1 in 10,000.
_DRIVER = """
import sys
sys.setswitchinterval(1.0)
from forecaster import csvio
from forecaster.errors import one_line_errors
one_line_errors(csvio.read_histories)(sys.argv[1])
"""

CSV_ERRORS = {
    "empty file": ("", "empty input"),
    "header only": ("step,loss,lr\n", "a header and no data rows"),
    "wrong columns": ("when,value\n1,2.0\n2,1.9\n", "missing columns step (or _step), loss"),
    "not a number": ("step,loss\n1,2.0\n2,abc\n", "not a number"),
}


def test_csv_error_paths_exit_2_with_one_line_50_times_each(tmp_path):
    jobs = []
    for name, (text, words) in CSV_ERRORS.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_text(text)
        jobs += [(name, path, words)] * 50
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(job):
        name, path, words = job
        proc = subprocess.run([sys.executable, "-c", _DRIVER, str(path)], capture_output=True, text=True,
                              timeout=120, env=env)
        return name, words, proc

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs))
    bad = [(n, p.returncode, p.stderr[-300:]) for n, _, p in results
           if p.returncode != 2 or len(p.stderr.splitlines()) != 1]
    assert not bad, f"{len(bad)} of {len(results)} exits were not one line and code 2, e.g. {bad[:3]}"
    for name, words, proc in results:
        assert words in _one_line_error(proc), name


# -- every error path of the real command, as a process ----------------------------------------------
def _forecast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forecaster.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "FORECASTER_DEVICE": "cpu"})


def test_each_bad_input_of_the_command_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "wrong.csv").write_text("when,value\n1,2.0\n")
    huge = _history(tmp_path / "huge.csv", scale=1e300)
    plain = _history(tmp_path / "plain.csv", future=False)
    good = _history(tmp_path / "good.csv")
    cases = {
        "empty file": (["predict", "--input", str(tmp_path / "empty.csv")], "empty input"),
        "wrong columns": (["predict", "--input", str(tmp_path / "wrong.csv")], "missing columns"),
        "overflowing loss": (["predict", "--input", str(huge)], "rescale"),
        "no horizon": (["predict", "--input", str(plain)], "--until 1200"),
        "predict --law bogus": (["predict", "--input", str(good), "--law", "bogus"], "'bogus' is not one of"),
        "predict --device tpu": (["predict", "--input", str(good), "--device", "tpu"], "'tpu' is not one of"),
        "sync --law bogus": (["sync", "--law", "bogus", "-e", "x"], "'bogus' is not one of"),
        "unknown tracker": (["sync", "--tracker", "neptune", "-e", "x"], "unknown tracker 'neptune'"),
        "wandb experiment": (["sync", "--tracker", "wandb", "--experiment", "x"], "W&B has projects"),
    }
    with ThreadPoolExecutor(3) as pool:
        procs = dict(zip(cases, pool.map(lambda c: _forecast(*c[0]), cases.values())))
    for name, (_, words) in cases.items():
        assert words in _one_line_error(procs[name]), name


# -- the messages themselves, in process ------------------------------------------------------------
def test_bad_law_and_device_are_click_choices_listed_in_help():
    runner = CliRunner()
    for cmd in ("predict", "sync"):
        help_text = runner.invoke(main, [cmd, "--help"]).output
        assert "[auto|" in help_text and "|cpu|cuda]" in help_text
        assert all(name in help_text for name in laws.available())
    out = runner.invoke(main, ["sync", "--device", "tpu"])
    assert out.exit_code == 2 and "Invalid value for '--device'" in out.output
    assert out.output.count("\n") == 1 and "Usage:" not in out.output


def test_a_config_file_law_is_checked_like_the_option(tmp_path):
    cfg = tmp_path / "sync.toml"
    cfg.write_text('[sync]\nlaw = "bogus"\nexperiments = ["x"]\n')
    out = CliRunner().invoke(main, ["sync", "--config", str(cfg)])
    assert out.exit_code == 2 and "law 'bogus' unknown" in out.output


def test_top_level_help_lists_each_command_once_with_a_whole_line():
    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("predict", "backtest", "whatif", "scaling", "sync"):
        listed = [line for line in out.splitlines() if line.strip().startswith(cmd + " ")]
        assert len(listed) == 1, (cmd, out)
        assert listed[0].rstrip().endswith(".") and "..." not in listed[0]


def test_nothing_to_forecast_names_the_flag_and_a_step(tmp_path):
    plain = _history(tmp_path / "plain.csv", future=False)
    out = CliRunner().invoke(main, ["predict", "--input", str(plain)])
    assert out.exit_code == 2
    assert "--until STEP (e.g. --until 1200, twice the last step 600)" in out.output
    assert "--schedule" in out.output
    fine = CliRunner().invoke(main, ["predict", "--input", str(plain), "--until", "1200", "--device", "cpu"])
    assert fine.exit_code == 0 and fine.output.splitlines()[-1].split(",")[1] == "1200"


def test_a_run_beyond_the_fits_range_is_reported_and_the_rest_forecast(tmp_path):
    ok = _history(tmp_path / "ok.csv").read_text().splitlines()
    big = _history(tmp_path / "big.csv", scale=1e300).read_text().splitlines()
    both = tmp_path / "both.csv"
    both.write_text("\n".join(["run," + ok[0]] + [f"ok,{r}" for r in ok[1:]] + [f"big,{r}" for r in big[1:]]) + "\n")
    out = CliRunner().invoke(main, ["predict", "--input", str(both), "--device", "cpu"])
    assert out.exit_code == 0
    assert "skipped run 'big': metric reaches 3e+300, beyond the fit's range" in out.output
    rows = [r for r in out.output.splitlines() if r.startswith(("ok,", "big,"))]
    assert rows and all(r.startswith("ok,") for r in rows)


def test_unknown_tracker_names_an_extra_only_where_one_exists():
    with pytest.raises(InputError) as e:
        trackers.load("neptune")
    assert "forecaster[" not in str(e.value) and "forecaster.trackers" in str(e.value)
    assert "mlflow" in trackers.registry._extras() and "wandb" in trackers.registry._extras() and "dev" not in trackers.registry._extras()


def test_wandb_reads_an_experiment_as_its_project():
    from forecaster_wandb.tracker import WandbTracker

    with pytest.raises(InputError) as e:
        WandbTracker(experiments=["x"])
    assert "W&B has projects, not experiments" in str(e.value) and "--project YOUR-ENTITY/x" in str(e.value)
    assert WandbTracker(experiments=["team/x"], cache_dir="").experiments == ["team/x"]


def test_bench_runner_lists_and_skips_what_lacks_data():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--list"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    assert {line.split()[0] for line in out.stdout.splitlines()} == {
        "speed", "scaling_sync", "cooldown_cases", "luo_cases", "pku_cases", "dev_cases", "scaling_fits"}
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    assert all((REPO / "benchmarks" / argv[0]).exists() for _, argv, _ in run_all.QUICK)


def test_bench_runner_skips_a_benchmark_whose_data_are_missing(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(run_all, "QUICK", [("cooldown_cases", ["cooldown_cases.py"], tmp_path / "absent")])
    monkeypatch.setattr(sys, "argv", ["run_all.py"])
    assert run_all.main() == 0
    out = capsys.readouterr().out
    assert f"skipped, needs the shared data at {tmp_path / 'absent'}" in out and "skipped" in out.splitlines()[-1]


def test_column_names_ignore_case_and_read_wandb_step(tmp_path):
    from forecaster import csvio

    for header in ("Step,Loss,LR", "_step,loss,lr", "STEP,LOSS,Lr"):
        path = _history(tmp_path / "h.csv", header=header)
        (h,), _ = csvio.read_histories(path)
        assert h.last_step == 600 and len(h.horizon) == 20 and h.has_lr
        assert np.isclose(h.values[0], 3.0)
    clash = tmp_path / "clash.csv"
    clash.write_text("step,Loss,LOSS\n1,2,3\n")
    with pytest.raises(InputError, match="would all be read as 'loss'"):
        csvio.read_histories(clash)
    both = tmp_path / "both.csv"
    both.write_text("_step,step,loss\n5,1,2.0\n6,2,1.9\n")
    (h,), _ = csvio.read_histories(both)
    assert list(h.steps) == [1, 2]  # an exact `step` wins over `_step`
