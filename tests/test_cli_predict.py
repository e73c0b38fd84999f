"""`forecast predict` / `forecast backtest` end to end on small synthetic CSVs, with the real Forecaster."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.signal import lfilter

from forecaster.cli import main

PEAK, FLOOR, WARM = 1e-2, 1e-4, 50


def schedule(kind: str, total: int) -> np.ndarray:
    """Per-step LR 0..total: linear warmup then constant / cosine / WSD (linear decay in the last 20 %)."""
    s = np.arange(total + 1)
    lr = np.full(total + 1, PEAK)
    if kind == "cosine":
        p = np.clip((s - WARM) / (total - WARM), 0, 1)
        lr = FLOOR + 0.5 * (PEAK - FLOOR) * (1 + np.cos(np.pi * p))
    elif kind == "wsd":
        d0 = int(0.8 * total)
        lr = np.where(s > d0, PEAK - (PEAK - FLOOR) * (s - d0) / (total - d0), PEAK)
    lr[:WARM] = PEAK * s[:WARM] / WARM
    return lr


def momentum_curve(lr: np.ndarray, L0: float, A: float = 1.0, alpha: float = 0.4, C: float = 0.08) -> np.ndarray:
    """The momentum law (docs/laws.md §1.1) on a per-step schedule, warmup counted at the peak in S2."""
    s1 = np.maximum(np.cumsum(lr), 1e-9)
    eta = lr.copy()
    eta[: int(np.argmax(lr))] = lr.max()
    d = np.zeros_like(eta)
    d[1:] = eta[:-1] - eta[1:]
    return L0 + A * s1 ** -alpha - C * np.cumsum(lfilter([1.0], [1.0, -0.999], d))


def write_csv(path, rows, header=("run", "group", "step", "lr", "loss")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def family_rows(group: str, L0: float, cut: int = 400, total: int = 1000, every: int = 20, lr_every: int = 100,
                seed: int = 0, prefix: str = ""):
    """A finished cosine and constant run plus a WSD run observed up to `cut` with planned LR rows after."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("cosine", "constant", "wsd"):
        lr = schedule(kind, total)
        loss = momentum_curve(lr, L0)
        for s in range(every, total + 1, every):
            seen = kind != "wsd" or s <= cut
            rows.append([f"{prefix}{kind}", group, s, lr[s] if s % lr_every == 0 else "",
                         loss[s] * (1 + 0.002 * rng.standard_normal()) if seen else ""])
    return rows


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def read_out(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory):
    """One predict call on two independent families; its CSV output and summary, computed once."""
    d = tmp_path_factory.mktemp("two")
    src = write_csv(d / "runs.csv", family_rows("g1", 2.0, prefix="a_") + family_rows("g2", 2.6, seed=1, prefix="b_"))
    res = invoke("predict", "--input", src, "--law", "momentum", "--output", d / "out.csv",
                 "--summary", d / "sum.json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    return d, res


def test_predict_csv_contract(two_groups):
    d, res = two_groups
    text = (d / "out.csv").read_text()
    assert text.splitlines()[0] == "run,step,lr,p50,p10,p90"
    rows = read_out(text)
    # only the WSD runs have horizon rows: steps 420..1000 every 20, exactly as given
    assert sorted({r["run"] for r in rows}) == ["a_wsd", "b_wsd"]
    for name, L0 in (("a_wsd", 2.0), ("b_wsd", 2.6)):
        r = [x for x in rows if x["run"] == name]
        steps = np.array([int(x["step"]) for x in r])
        assert steps.tolist() == list(range(420, 1001, 20))
        # the LR between sparse rows (every 100 steps) is interpolated, the decay included
        lr = np.array([float(x["lr"]) for x in r])
        np.testing.assert_allclose(lr, schedule("wsd", 1000)[steps], rtol=1e-6)
        p50, p10, p90 = (np.array([float(x[k]) for x in r]) for k in ("p50", "p10", "p90"))
        assert np.all(p10 <= p50) and np.all(p50 <= p90)
        truth = momentum_curve(schedule("wsd", 1000), L0)[steps]
        # the siblings show the decay: the forecast must follow it (1 % is far looser than the fit)
        assert np.max(np.abs(p50 / truth - 1)) < 0.01
    assert "forecast 2 of 6 runs" in res.stderr


def test_summary_json(two_groups):
    d, _ = two_groups
    s = json.loads((d / "sum.json").read_text())
    assert s["forecast"] == 2 and s["skipped"] == []
    by = {r["run"]: r for r in s["runs"]}
    assert set(by) == {f"{p}{k}" for p in ("a_", "b_") for k in ("cosine", "constant", "wsd")}
    w = by["a_wsd"]
    assert w["law"] == "momentum" and set(w["params"]) == {"L0", "A", "alpha", "C"}
    assert w["group"] == "g1" and w["final"]["step"] == 1000
    assert w["final"]["p10"] <= w["final"]["p50"] <= w["final"]["p90"]
    assert by["a_cosine"]["final"] is None and by["a_cosine"]["notes"]  # fitted, nothing to forecast
    assert s["settings"]["seed"] == 0


def test_schedule_until_gives_a_horizon(tmp_path):
    lr = schedule("cosine", 1000)
    loss = momentum_curve(lr, 2.0)
    # a live run: observed to step 300 with LR logged on its rows; no future rows
    rows = [[s, lr[s], loss[s]] for s in range(25, 301, 25)]
    src = write_csv(tmp_path / "live.csv", rows, header=("step", "lr", "loss"))
    spec = f"cosine(peak={PEAK}, warmup={WARM}, total=1000, final={FLOOR})"
    res = invoke("predict", "--input", src, "--schedule", spec, "--until", 1000, "--law", "momentum",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    out = read_out(res.stdout)
    steps = [int(r["step"]) for r in out]
    assert steps == list(range(325, 1001, 25))  # every logging interval (25) up to --until
    assert {r["run"] for r in out} == {"live"}
    np.testing.assert_allclose([float(r["lr"]) for r in out], lr[steps], rtol=1e-6)
    # --until defaults to the schedule's total
    res2 = invoke("predict", "--input", src, "--schedule", spec, "--law", "momentum", "--device", "cpu")
    assert res2.exit_code == 0 and [int(r["step"]) for r in read_out(res2.stdout)] == steps


def test_too_few_points_skipped_rest_forecast(tmp_path):
    # one point is too few; two, with siblings that show the law, are enough to place a run on it
    rows = family_rows("g", 2.0) + [["short", "g", 20, 0.01, 9.0], ["short", "g", 40, 0.01, ""],
                                    ["few", "g", 20, 0.01, 9.0], ["few", "g", 40, 0.01, 8.0],
                                    ["few", "g", 60, 0.01, ""]]
    src = write_csv(tmp_path / "r.csv", rows)
    res = invoke("predict", "--input", src, "--law", "momentum", "--device", "cpu", "--summary", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    assert {r["run"] for r in read_out(res.stdout)} == {"wsd", "few"}
    assert "skipped run 'short': too few points" in res.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["skipped"][0]["run"] == "short" and "too few points" in s["skipped"][0]["reason"]


def test_deterministic_for_a_seed(tmp_path):
    src = write_csv(tmp_path / "r.csv", family_rows("g", 2.0, total=600, cut=300))
    a = invoke("predict", "--input", src, "--law", "momentum", "--device", "cpu", "--seed", 3)
    b = invoke("predict", "--input", src, "--law", "momentum", "--device", "cpu", "--seed", 3)
    assert a.exit_code == 0 and a.stdout == b.stdout and len(read_out(a.stdout)) == 15


def test_nonfinite_and_duplicates_warned_not_fatal(tmp_path):
    rows = family_rows("g", 2.0, total=600, cut=300)
    rows[3][4] = "nan"
    rows.append(list(rows[5]))  # a duplicate row
    src = write_csv(tmp_path / "r.csv", rows)
    res = invoke("predict", "--input", src, "--law", "momentum", "--device", "cpu")
    assert res.exit_code == 0, res.output
    warn = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert any("dropped 1 NaN/inf value (loss: 1)" in w for w in warn)
    assert any("duplicate" in w for w in warn)


BAD = [
    ("missing.csv", None, [], "not found"),
    ("cols.csv", "step,lr\n1,0.1\n", [], "missing column loss"),
    ("empty.csv", "", [], "empty input"),
    ("neg.csv", "step,lr,loss\n1,0.1,3\n2,-0.1,2\n", [], "negative learning rate"),
    ("text.csv", "step,loss\n1,x\n", [], "not a number"),
    ("done.csv", "step,loss\n1,3\n2,2.5\n3,2.4\n4,2.3\n5,2.2\n", [], "nothing to forecast"),
    ("spec.csv", "step,loss\n1,3\n2,2.5\n", ["--schedule", "cosine(peak=oops)"], "bad schedule spec"),
    ("until.csv", "step,loss\n1,3\n2,2.5\n", ["--until", "2"], "--until 2 is not after"),
    ("few.csv", "step,loss\n1,3\n2,2.5\n3,\n", [], "no run could be forecast: 1 skipped (e.g. run 'few': too few"),
]


@pytest.mark.parametrize("name, content, extra, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2(tmp_path, name, content, extra, needle):
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    res = invoke("predict", "--input", p, *extra)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert "Traceback" not in res.output and res.stdout == ""


def test_bad_cutoffs_and_no_finished_runs(tmp_path):
    p = write_csv(tmp_path / "r.csv", [[1, 0.1, 3]], header=("step", "lr", "loss"))
    for extra, needle in ((["--cutoffs", "0.5,1.5"], "--cutoffs"), ([], "nothing to backtest")):
        res = invoke("backtest", "--input", p, *extra)
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_real_process_one_line_no_traceback(tmp_path):
    """The installed entry point, as a user runs it: exit code 2 and a single stderr line."""
    p = tmp_path / "bad.csv"
    p.write_text("step,lr,loss\n1,-1,2\n")
    proc = subprocess.run([sys.executable, "-m", "forecaster.cli", "predict", "--input", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_backtest_json_structure(tmp_path):
    d = tmp_path / "fam" / "m1"
    d.mkdir(parents=True)
    for kind in ("cosine", "wsd"):
        lr = schedule(kind, 600)
        loss = momentum_curve(lr, 2.0)
        write_csv(d / f"{kind}.csv", [[s, lr[s] if s % 60 == 0 else "", loss[s]] for s in range(20, 601, 20)],
                  header=("step", "lr", "loss"))
    res = invoke("backtest", "--input", tmp_path / "fam", "--cutoffs", "0.5", "--law", "momentum",
                 "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cutoffs"] == [0.5] and out["run"]["histories"] == 4
    (row,) = out["summary"]
    assert row["cutoff"] == 0.5 and row["cases"] == 2 and row["skipped"] == 0
    assert set(row["methods"]) == {"forecaster", "last_value", "power_law"}
    fc = row["methods"]["forecaster"]
    assert set(fc) == {"final_mean", "final_worst", "unseen_mean", "unseen_worst", "coverage"}
    assert 0 <= fc["coverage"] <= 1 and fc["final_worst"] >= fc["final_mean"]
    # on noise-free curves of the fitted law, the LR-aware forecast beats the last value
    assert fc["final_mean"] < row["methods"]["last_value"]["final_mean"]
    cases = out["cases"]
    assert [(c["group"], c["target"]) for c in cases] == [("m1", "cosine"), ("m1", "wsd")]
    assert cases[0]["cut_step"] == 300 and cases[0]["law"] == "momentum"
    # the table form
    res = invoke("backtest", "--input", tmp_path / "fam", "--cutoffs", "0.5", "--law", "momentum", "--device", "cpu")
    assert res.exit_code == 0 and "| 0.5 | forecaster | 2 |" in res.stdout


def test_size_column_lets_the_size_law_forecast_an_unseen_size(tmp_path):
    import numpy as np

    from tests.synthetic import cosine_lr, curve

    total = 3000
    full = np.arange(total + 1)
    steps = np.arange(100, total + 1, 100)
    lr = cosine_lr(full, 1e-3, total)
    truth = {"L0": 1.8, "A": 0.6, "alpha": 0.5, "B": 60.0, "beta": 0.3, "C": 0.25, "gamma": 0.05}
    lines = ["run,size,step,lr,loss"]
    for name, n in [("s", 2e7), ("m", 6e7), ("l", 2e8)]:
        y = curve("momentum_size", truth, steps, lr, noise=1e-3, size=n)
        lines += [f"{name},{n:g},{s},{float(lr[s])!r},{float(v)!r}" for s, v in zip(steps, y)]
    big = curve("momentum_size", truth, steps, lr, size=1e9)
    lines += [f"xl,1e9,{s},{float(lr[s])!r}," for s in steps]  # planned LR only, no loss yet
    src = tmp_path / "sizes.csv"
    src.write_text("\n".join(lines) + "\n")
    res = invoke("predict", "--input", src, "--law", "momentum_size", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = [r for r in read_out(res.stdout) if r["run"] == "xl"]
    assert len(rows) == len(steps)
    p50 = np.array([float(r["p50"]) for r in rows])
    assert np.max(np.abs(p50 - big) / big) < 0.01


def test_non_positive_size_is_one_line_exit_2(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("run,size,step,loss\na,-5,1,3.0\na,-5,2,2.9\n")
    res = invoke("predict", "--input", src)
    assert res.exit_code == 2 and "model size must be positive" in res.output and "Traceback" not in res.output


def test_no_follow_siblings_gives_the_smooth_law_forecast(tmp_path):
    # three runs trained on one data order: the same per-step wiggle on each
    total, every = 2000, 10
    steps = np.arange(every, total + 1, every)
    batches = np.exp(0.01 * np.random.default_rng(3).standard_normal(len(steps)))
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "group", "step", "lr", "loss"])
        for kind in ("cosine", "constant", "wsd"):
            lr = schedule(kind, total)
            y = momentum_curve(lr, 2.0)[steps] * batches
            for s, v in zip(steps, y):
                w.writerow([kind, "g", s, lr[s], f"{v:.6f}" if kind != "wsd" or s <= 1000 else ""])
    runner = CliRunner()
    out = {}
    for flag in ("--follow-siblings", "--no-follow-siblings"):
        res = runner.invoke(main, ["predict", "--input", str(path), "--law", "momentum", flag,
                                   "--output", str(tmp_path / f"{flag}.csv"), "--summary", str(tmp_path / f"{flag}.json")])
        assert res.exit_code == 0, res.output
        rows = list(csv.DictReader((tmp_path / f"{flag}.csv").open()))
        out[flag] = np.array([float(r["p50"]) for r in rows if r["run"] == "wsd"])
        settings = json.loads((tmp_path / f"{flag}.json").read_text())["settings"]
        assert settings["follow_siblings"] is (flag == "--follow-siblings")
    # the smooth forecast falls step by step; the followed one wiggles with the shared batches
    assert np.all(np.diff(out["--no-follow-siblings"]) <= 1e-9)
    assert np.sum(np.diff(out["--follow-siblings"]) > 0) > 10


def test_predict_in_chunks_of_groups_matches_one_batch(two_groups, tmp_path, monkeypatch):
    """A memory budget too small for both groups fits them one chunk at a time: the same runs, rows
    and summary, the fits unchanged (a group's fit does not depend on its batch), the bands within
    their sampling noise."""
    from forecaster import chunks

    d, _ = two_groups
    monkeypatch.setattr(chunks, "BYTES_PER_POINT", 2**20 // 200)  # one group of ~200 points per MiB
    res = invoke("predict", "--input", d / "runs.csv", "--law", "momentum", "--output", tmp_path / "out.csv",
                 "--summary", tmp_path / "sum.json", "--device", "cpu", "--memory-budget", "1")
    assert res.exit_code == 0, res.output
    assert "in 2 chunks" in res.stderr and "forecast 2 of 6 runs" in res.stderr
    one, chunked = read_out((d / "out.csv").read_text()), read_out((tmp_path / "out.csv").read_text())
    assert [(r["run"], r["step"]) for r in one] == [(r["run"], r["step"]) for r in chunked]
    for key, rtol in (("p50", 1e-6), ("p10", 0.02), ("p90", 0.02)):
        np.testing.assert_allclose([float(r[key]) for r in chunked], [float(r[key]) for r in one], rtol=rtol)
    a, b = (json.loads(p.read_text()) for p in (d / "sum.json", tmp_path / "sum.json"))
    assert [r["run"] for r in a["runs"]] == [r["run"] for r in b["runs"]] and b["forecast"] == a["forecast"] == 2
    assert b["settings"]["chunks"] == 2


def test_selfcal_flag_scales_the_band_around_the_same_p50(tmp_path):
    src = write_csv(tmp_path / "runs.csv", family_rows("g1", 2.0))
    got = {}
    for flag in ("--selfcal", "--no-selfcal"):
        res = invoke("predict", "--input", src, "--law", "momentum", flag, "--device", "cpu",
                     "--output", tmp_path / f"{flag}.csv", "--summary", tmp_path / f"{flag}.json")
        assert res.exit_code == 0, res.output
        s = json.loads((tmp_path / f"{flag}.json").read_text())
        assert s["settings"]["selfcal"] is (flag == "--selfcal")
        (w,) = [r for r in s["runs"] if r["run"] == "wsd"]
        got[flag] = w
    on, off = got["--selfcal"], got["--no-selfcal"]
    assert on["final"]["p50"] == pytest.approx(off["final"]["p50"], rel=1e-9)
    assert any("finished sibling(s), cut at this run's share" in n for n in on["notes"])
    assert not any("cut at this run's share" in n for n in off["notes"])
    ratio = np.log(on["final"]["p90"] / on["final"]["p50"]) / np.log(off["final"]["p90"] / off["final"]["p50"])
    assert ratio != pytest.approx(1.0, abs=1e-3)  # the siblings moved the band
