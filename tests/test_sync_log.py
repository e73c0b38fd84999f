"""`forecast sync --log-file` / `[sync] log_file`, and timestamped lines off a terminal."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from click.testing import CliRunner

from forecaster.cli import main
from mlflow_runs import log_hf_run

pytest.importorskip("mlflow")

LAW = "multipower"  # one law keeps it fast
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)) (.*)$")


@pytest.fixture
def store(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("logged", artifact_location=(tmp_path / "artifacts").as_uri())
    log_hf_run(client, exp, "live", total=600, upto=300, status="RUNNING", seed=9)
    return uri


def _sync(*args: str):
    return CliRunner().invoke(main, ["sync", *args], catch_exceptions=False)


def _stamped(line: str) -> str:
    m = STAMP.match(line)
    assert m, f"no timestamp: {line!r}"
    when = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    assert when.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - when) < dt.timedelta(minutes=5)
    return m.group(2)


def test_log_file_from_the_config_is_created_appended_and_timestamped(store, tmp_path) -> None:
    log = tmp_path / "deep" / "er" / "sync.log"
    cfg = tmp_path / "sync.toml"
    cfg.write_text(f'[sync]\ntracking_uri = "{store}"\nexperiments = ["logged"]\nlaw = "{LAW}"\nplots = false\n'
                   f'lock_file = "{tmp_path / "l"}"\nlog_file = "{log}"\n')
    res = _sync("--config", str(cfg))
    assert res.exit_code == 0 and res.output == ""  # everything went to the file
    first = log.read_text().splitlines()
    assert [_stamped(ln) for ln in first][0].startswith("live (")  # the per-run line, then the summary
    assert "1 runs seen: 1 forecast" in _stamped(first[-1])
    res = _sync("--config", str(cfg), "--quiet")
    lines = log.read_text().splitlines()
    assert lines[: len(first)] == first and len(lines) == len(first) + 1
    assert "1 unchanged" in _stamped(lines[-1])


def test_errors_go_to_the_log_with_their_exit_code_and_to_stderr(store, tmp_path) -> None:
    log = tmp_path / "sync.log"
    res = _sync("--tracking-uri", store, "-e", "nope", "--lock-file", str(tmp_path / "l"), "--log-file", str(log))
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: ") and "'nope' not found" in res.output  # what cron mails
    (line,) = log.read_text().splitlines()
    assert _stamped(line).startswith("error: ") and line.endswith("(exit 2)")
    # a bad config file is logged too when --log-file is on the command line
    res = _sync("--config", str(tmp_path / "missing.toml"), "--log-file", str(log))
    assert res.exit_code == 2 and "missing.toml not found" in log.read_text().splitlines()[-1]


@pytest.mark.parametrize("where", ["a_dir", "under_a_file", "config_not_a_string"])
def test_unusable_log_file_is_one_line_exit_2(tmp_path, where) -> None:
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("")
    args = {"a_dir": ["--log-file", str(tmp_path / "a_dir")],
            "under_a_file": ["--log-file", str(tmp_path / "a_file" / "sync.log")]}.get(where)
    if args is None:
        (tmp_path / "c.toml").write_text("[sync]\nlog_file = 3\n")
        args = ["--config", str(tmp_path / "c.toml")]
    res = _sync("-e", "x", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--lock-file", str(tmp_path / "l"), *args)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("error: ")
    assert "log" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m.db").exists()  # stopped before touching the tracker


def test_off_a_terminal_lines_are_timestamped_and_logging_is_left_as_found(store, tmp_path) -> None:
    before = [(lg.propagate, list(lg.handlers), lg.level)
              for lg in map(logging.getLogger, ("forecaster", "forecaster.sync", "forecaster_mlflow"))]
    res = _sync("--tracking-uri", store, "-e", "logged", "--law", LAW, "--no-plots", "--dry-run",
                "--lock-file", str(tmp_path / "l"))
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert [_stamped(ln) for ln in lines][-1].startswith("[dry run] 1 runs seen: 1 would forecast")
    assert _stamped(lines[0]).startswith("[dry run] live (")
    after = [(lg.propagate, list(lg.handlers), lg.level)
             for lg in map(logging.getLogger, ("forecaster", "forecaster.sync", "forecaster_mlflow"))]
    assert after == before  # a later caller (or caplog) still sees forecaster's records
