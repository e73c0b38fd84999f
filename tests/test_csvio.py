"""The CSV contract: reading/validating histories and writing forecasts (no fitting here)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys

import numpy as np
import pytest

from forecaster import csvio
from forecaster.errors import InputError
from forecaster.histories import RunForecast, RunHistory


@pytest.fixture(autouse=True, params=["arrow", "arrow-from-disk", "csv"])
def engine(request, monkeypatch):
    """Every test runs on both readers: pyarrow's (when installed) and the csv module's; pyarrow's
    also as it reads a big file (scanned in place, parsed from disk)."""
    if request.param == "csv":
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails: the fallback reads
    elif importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    elif request.param == "arrow-from-disk":
        monkeypatch.setattr(csvio.read, "BIG_FILE", 1)
    return request.param


def write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_runs_groups_horizon_and_sparse_lr(tmp_path):
    rows = []
    for run, group in (("a", "g1"), ("b", "g1"), ("c", "g2")):
        for s in range(0, 110, 10):
            loss = "" if (run == "a" and s > 60) else 3.0 - s / 100
            lr = 1e-3 if s % 50 == 0 else ""  # LR logged every 50 steps only
            rows.append([run, group, s, lr, loss])
    p = write(tmp_path / "runs.csv", ["run", "group", "step", "lr", "loss"], rows)
    hist, report = csvio.read_histories(p)
    assert [h.run for h in hist] == ["a", "b", "c"]
    assert [h.group for h in hist] == ["g1", "g1", "g2"]
    a, b, _ = hist
    assert a.steps.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert a.horizon.tolist() == [70, 80, 90, 100]  # rows after the last observed value
    assert b.horizon.tolist() == []
    assert a.lr_steps.tolist() == [0, 50, 100]  # past and planned LR rows both kept
    assert report.warnings() == []


def test_defaults_without_run_group_or_lr_columns(tmp_path):
    p = write(tmp_path / "myrun.csv", ["step", "loss"], [[s, 2.0 + 1 / (s + 1)] for s in range(5)] + [[9, ""]])
    (h,), _ = csvio.read_histories(p)
    assert h.run == "myrun" and h.group == "myrun"
    assert h.lr_steps is None and not h.has_lr
    assert h.horizon.tolist() == [9]


def test_other_metric_column(tmp_path):
    p = write(tmp_path / "r.csv", ["step", "loss", "val_loss"], [[1, 5, 4], [2, 4, ""], [3, 3, 2]])
    (h,), _ = csvio.read_histories(p, metric="val_loss")
    assert h.steps.tolist() == [1, 3] and h.values.tolist() == [4, 2] and h.metric == "val_loss"


@pytest.mark.parametrize("content, needle", [
    (None, "not found"),
    ("", "empty input"),
    ("step,loss\n", "empty input"),
    ("step,lr\n1,0.1\n", "missing column loss"),
    ("run,loss\na,1\n", "missing column step"),
    ("step,loss\n1,abc\n", ":2: column 'loss' has 'abc'"),
    ("step,loss\n1.5,2\n", "not a whole number"),
    ("step,loss\n-1,2\n", "negative step"),
    ("step,lr,loss\n1,0.1,2\n2,-0.1,2\n", ":3: negative learning rate"),
    ("run,group,step,loss\na,g1,1,2\na,g2,2,2\n", "more than one group"),
    ("run,step,loss\n,1,2\n", "empty run name"),
    ("step,loss\n\n1, 2 \n2,abc\n", ":4: column 'loss' has 'abc'"),  # editor line numbers
])
def test_bad_input_is_one_clear_error(tmp_path, content, needle):
    p = tmp_path / "in.csv"
    if content is not None:
        p.write_text(content)
    with pytest.raises(InputError) as exc:
        csvio.read_histories(p)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_nonfinite_values_dropped_and_counted(tmp_path):
    p = write(tmp_path / "r.csv", ["step", "lr", "loss"],
              [[1, 0.1, 3], [2, "nan", 2.5], [3, 0.1, "inf"], [4, 0.1, "NaN"], [5, 0.1, 2]])
    (h,), report = csvio.read_histories(p)
    assert h.steps.tolist() == [1, 2, 5]
    assert h.lr_steps.tolist() == [1, 3, 4, 5]
    assert report.nonfinite == {"loss": 2, "lr": 1}
    (line,) = report.warnings()
    assert "dropped 3 NaN/inf values" in line


def test_duplicates_keep_last_and_unsorted_sorted(tmp_path):
    p = write(tmp_path / "r.csv", ["run", "step", "lr", "loss"],
              [["a", 3, 0.1, 3.0], ["a", 1, 0.1, 5.0], ["a", 2, 0.1, 4.0], ["a", 2, "", 3.9],
               ["b", 1, 0.1, 2.0], ["b", 2, 0.1, 1.9],
               # loss and LR on separate rows at one step, as trackers log them: not a duplicate
               ["b", 3, 0.1, ""], ["b", 3, "", 1.8]])
    (a, b), report = csvio.read_histories(p)
    assert a.steps.tolist() == [1, 2, 3] and a.values.tolist() == [5.0, 3.9, 3.0]
    assert b.steps.tolist() == [1, 2, 3] and b.lr_steps.tolist() == [1, 2, 3]
    assert report.duplicates == {"a": 1}
    assert report.unsorted == ["a"]
    text = " ".join(report.warnings())
    assert "duplicate" in text and "sorted" in text and "'a'" in text


def test_folder_input_run_per_file_group_per_folder(tmp_path):
    for grp in ("m25", "m100"):
        (tmp_path / "d" / grp).mkdir(parents=True)
        for name in ("cosine", f"only_{grp}"):
            write(tmp_path / "d" / grp / f"{name}.csv", ["step", "lr", "loss"],
                  [[s, 1e-3, 3 - s / 10] for s in range(1, 6)])
    hist, _ = csvio.read_histories(tmp_path / "d")
    by = {h.run: h.group for h in hist}
    # stems that collide across folders are qualified by their folder
    assert by == {"m100/cosine": "m100", "only_m100": "m100", "m25/cosine": "m25", "only_m25": "m25"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .csv files"):
        csvio.read_histories(tmp_path / "empty")


def test_extend_horizon_every_logging_interval(tmp_path):
    h = RunHistory("r", np.arange(0, 100, 20), np.ones(5), meta={"row_steps": np.arange(0, 100, 20)})
    assert csvio.logging_interval(h) == 20
    assert csvio.extend_horizon(h, 150).tolist() == [100, 120, 140, 150]
    assert csvio.extend_horizon(h, 80).tolist() == []


def _forecast(run, n, skipped=None):
    if skipped:
        return RunForecast.skip(run, "g", skipped)
    s = np.arange(1, n + 1) * 10
    return RunForecast(run, "g", s, np.full(n, 1e-3), np.full(n, 2.0), np.full(n, 1.9), np.full(n, 2.1),
                       law="momentum", params={"L0": 1.0})


def test_write_forecasts_exact_columns_and_skips():
    buf = io.StringIO()
    n = csvio.write_forecasts([_forecast("a", 3), _forecast("b", 0, "too few points")], buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ["run", "step", "lr", "p50", "p10", "p90"]
    assert n == 3 and len(rows) == 4
    assert rows[1] == ["a", "10", "0.001", "2", "1.9", "2.1"]
    # names that need quoting and unknown LR (schedule-free laws) still give a valid CSV
    f = _forecast("x,y", 1)
    f.lr[:] = np.nan
    buf = io.StringIO()
    csvio.write_forecasts([f], buf)
    assert list(csv.reader(io.StringIO(buf.getvalue())))[1] == ["x,y", "10", "", "2", "1.9", "2.1"]


def test_summary_json_structure(tmp_path):
    hs = [RunHistory("a", [1, 2], [3.0, 2.0], group="g"), RunHistory("b", [1], [3.0], group="g")]
    s = csvio.summary(hs, [_forecast("a", 2), _forecast("b", 0, "too few points")], warnings=["w"])
    csvio.write_json(s, tmp_path / "s.json")
    back = json.loads((tmp_path / "s.json").read_text())
    assert back["forecast"] == 1
    assert back["skipped"] == [{"run": "b", "group": "g", "reason": "too few points"}]
    a = back["runs"][0]
    assert a["law"] == "momentum" and a["params"] == {"L0": 1.0}
    assert a["final"] == {"step": 20, "p50": 2.0, "p10": 1.9, "p90": 2.1}
    assert back["runs"][1]["final"] is None and back["warnings"] == ["w"]


def test_both_readers_agree_on_a_plain_file(tmp_path, monkeypatch, engine):
    if engine != "arrow":
        pytest.skip("compares the arrow reader with the csv one")
    rng = np.random.default_rng(3)
    rows = []
    for run in (7, 8, 9):  # numeric run names stay names
        for s in rng.permutation(40):
            loss = rng.choice(["", "nan", "inf", f"{rng.uniform(1, 3):.6f}"], p=[0.1, 0.05, 0.05, 0.8])
            lr = rng.choice(["", f"{rng.uniform(0, 1e-3):.3e}"])
            rows.append([run, f"g{run % 2}", int(s) // 2 * 2, lr, loss])  # duplicate steps too
    p = write(tmp_path / "plain.csv", ["run", "group", "step", "lr", "loss"], rows)
    fast, fast_report = csvio.read_histories(p)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    slow, slow_report = csvio.read_histories(p)
    assert fast_report == slow_report and fast_report.nonfinite and fast_report.duplicates
    assert [h.run for h in fast] == ["7", "8", "9"]
    for a, b in zip(fast, slow):
        assert (a.run, a.group, a.meta["line"]) == (b.run, b.group, b.meta["line"])
        np.testing.assert_array_equal(a.meta["row_steps"], b.meta["row_steps"])
        for name in ("steps", "values", "lr_steps", "lr_values", "horizon"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_both_writers_write_the_same_numbers(monkeypatch, engine):
    if engine != "arrow":
        pytest.skip("compares the arrow writer with the csv one")
    rng = np.random.default_rng(5)
    fs = []
    for run in ("a", "b", "c"):
        n = 50
        f = _forecast(run, n)
        f.lr[:], f.p50[:] = rng.lognormal(-8, 3, n), rng.lognormal(0, 6, n)  # 1e-12 .. 1e12
        f.p10[:], f.p90[:] = f.p50 * 0.9, f.p50 * 1.1
        f.lr[::7] = np.nan
        fs.append(f)
    fast = io.StringIO()
    n = csvio.write_forecasts(fs[:2], fast)
    n += csvio.write_forecasts(fs[2:], fast, header=False)  # a file continued chunk by chunk
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    slow = io.StringIO()
    assert csvio.write_forecasts(fs, slow) == n == 150
    a, b = (list(csv.reader(io.StringIO(x.getvalue()))) for x in (fast, slow))
    assert a[0] == b[0] and len(a) == len(b) == 151
    for ra, rb in zip(a[1:], b[1:]):
        assert ra[:2] == rb[:2]
        # the same decimals: %.8g and Arrow's shortest form of the value rounded to 8 digits
        assert [float(x) if x else None for x in ra[2:]] == [float(x) if x else None for x in rb[2:]]
