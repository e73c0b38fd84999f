"""`forecast whatif` end to end on a synthetic CSV: a group with a decayed sibling, and a lone run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from forecaster.cli import main
from tests.test_whatif import STEPS, TOTAL, _loss, _lr


def _rows(run: str, group: str, decay_from: int | None, seen: int, seed: int, future: bool = True) -> list:
    lr = _lr(TOTAL, decay_from)
    y = _loss(lr)[STEPS] * np.exp(0.002 * np.random.default_rng(seed).standard_normal(len(STEPS)))
    return [(run, group, int(s), f"{lr[s]:.6g}", f"{v:.6f}" if s <= seen else "")
            for s, v in zip(STEPS, y) if s <= seen or future]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    rows = (_rows("decayed", "g", 4000, TOTAL, 1) + _rows("decayed-early", "g", 2500, TOTAL, 2)
            + _rows("live", "g", None, 3000, 3) + _rows("lone", "solo", None, 3000, 4, future=False))
    path = tmp_path_factory.mktemp("whatif") / "runs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("run", "group", "step", "lr", "loss"))
        w.writerows(rows)
    return path


def _invoke(*args):
    return CliRunner().invoke(main, ["whatif", *map(str, args)])


def test_table_csv_json_and_plot_for_a_run_with_a_decayed_sibling(runs_csv, tmp_path) -> None:
    out, js, png = tmp_path / "o.csv", tmp_path / "o.json", tmp_path / "o.png"
    r = _invoke("--input", runs_csv, "--run", "live", "--cooldown-starts", "3000:4500:4", "--cooldown-length", 1500,
                "--schedule", "wsd(peak=1e-3, warmup=200, decay=0.3, total=6000)",
                "--output", out, "--json", js, "--plot", png)
    assert r.exit_code == 0, r.output
    assert "cooling down now (1,500 steps, linear to 0):" in r.output
    assert "as planned (step 6,000):" in r.output and "not identified" not in r.output
    answer = json.loads(js.read_text())
    kinds = [o["kind"] for o in answer["options"]]
    assert kinds[:2] == ["now", "planned"] and kinds.count("start") == 3 and "schedule" in kinds
    starts = [o for o in answer["options"] if o["kind"] == "start"]
    assert [o["start"] for o in starts] == [3500, 4000, 4500]
    assert all(o["end"] == o["start"] + 1500 for o in starts)
    assert answer["best_length"]["identified"]
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert {r["kind"] for r in rows} == set(kinds)
    now = [r for r in rows if r["kind"] == "now"]
    assert float(now[-1]["p50"]) == pytest.approx(answer["options"][0]["final"], rel=1e-5)
    assert all(float(r["p10"]) <= float(r["p50"]) <= float(r["p90"]) for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_lone_run_without_a_decay_gets_a_wide_band_and_a_note(runs_csv) -> None:
    r = _invoke("--input", runs_csv, "--run", "lone", "--until", 6000, "--json", "-")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.output)
    now = answer["options"][0]
    assert now["kind"] == "now" and now["unidentified"] and now["p90"] / now["p10"] > 1.01
    assert any("not identified" in n for n in answer["notes"])
    assert not answer["best_length"]["identified"]
    assert any("not identified" in line for line in answer["lines"])


@pytest.mark.parametrize("args, message", [
    (("--run", "nobody"), "not in the input"),
    (("--run", "live", "--cooldown-starts", "4000:3000"), "--cooldown-starts"),
    (("--run", "live", "--cooldown-starts", "1000,2000"), "before the run's last observed step"),
    (("--run", "live", "--schedule", "zigzag(total=9)"), "zigzag"),
    (("--run", "live", "--schedule", "constant(peak=1e-3, total=2000)"), "after the run's last observed step"),
    (("--run", "live", "--share", "2"), "share"),
    (("--run", "live", "--cooldown-lengths", "a,b"), "--cooldown-lengths"),
])
def test_bad_input_is_one_line_and_exit_2(runs_csv, args, message) -> None:
    r = _invoke("--input", runs_csv, *args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_listed_in_the_command_group() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert "whatif" in r.output
