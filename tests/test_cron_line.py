"""The crontab line and the dry run of docs/cron.md, run the way cron runs them on a fresh account.

Only the environment is substituted: HOME (a fresh folder with no ~/.cache), the tracking URI (a
sqlite:/// store seeded with one running run) and the path of `forecast` (this environment's).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_runs import log_hf_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cron.md"
TIMEOUT = 240  # seconds per command: importing torch and mlflow and one small fit take ~10 s
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (.*)$")
SECRETS = {"MLFLOW_TRACKING_TOKEN": "tok-3b1f9e-DO-NOT-PRINT", "MLFLOW_TRACKING_PASSWORD": "pw-77ac-DO-NOT-PRINT",
           "FORECAST_SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/hook-DO-NOT-PRINT"}


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## Crontab line")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _doc_commands() -> tuple[str, str, str]:
    """(the config file's TOML, the dry-run command, the crontab line's command) as the docs give them."""
    sec = _section()
    (toml,) = re.findall(r"```toml\n(.*?)```", sec, re.S)[:1]
    code = [ln.strip() for ln in sec.splitlines() if ln.startswith("    ") and "forecast sync" in ln]
    dry = [ln for ln in code if "--dry-run" in ln]
    cron = [ln for ln in code if re.match(r"([\d*/,-]+\s+){5}", ln)]
    assert len(dry) == 1 and len(cron) == 1, code
    return toml, dry[0], re.sub(r"^([\d*/,-]+\s+){5}", "", cron[0])


def _substitute(cmd: str, uri: str) -> str:
    forecast = Path(sys.executable).parent / "forecast"
    cmd, n_uri = re.subn(r"MLFLOW_TRACKING_URI=\S+", f"MLFLOW_TRACKING_URI={uri}", cmd)
    cmd, n_exe = re.subn(r"\S*/bin/forecast(?=\s)", str(forecast), cmd)
    assert n_uri == 1 and n_exe == 1, cmd
    return cmd


@pytest.fixture
def account(tmp_path):
    """A fresh HOME, a seeded store outside it, cron's sparse environment plus credentials."""
    if not (Path(sys.executable).parent / "forecast").exists():
        pytest.skip("no `forecast` script beside this Python (install the package: make install)")
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    from mlflow import MlflowClient

    toml, _, _ = _doc_commands()
    cfg = tomllib.loads(toml)["sync"]
    home = tmp_path / "home"
    home.mkdir()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    client = MlflowClient(uri)
    exp = client.create_experiment(cfg["experiments"][0], artifact_location=(tmp_path / "artifacts").as_uri())
    rid = log_hf_run(client, exp, "tiny-live", total=600, upto=300, every=20, status="RUNNING", seed=5)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "LOGNAME": "forecast-bot",
           "LANG": "C.UTF-8", "MLFLOW_TRACKING_USERNAME": "forecast-bot", "FORECASTER_DEVICE": "cpu", **SECRETS}
    return {"home": home, "uri": uri, "client": client, "run": rid, "env": env, "toml": toml}


def _bash(cmd: str, account: dict) -> subprocess.CompletedProcess:
    # a new session and no stdin: no controlling terminal, as under cron
    return subprocess.run(["bash", "-c", cmd], env=account["env"], cwd=account["home"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)


def _no_secrets(*texts: str) -> None:
    for text in texts:
        for name, value in SECRETS.items():
            assert value not in text, f"${name} was printed"


def test_documented_dry_run_then_crontab_line_on_a_fresh_account(account) -> None:
    home, client, rid = account["home"], account["client"], account["run"]
    _, dry, cron = _doc_commands()
    # the docs' step 1: the config file, as written there
    cfg = home / ".config" / "forecaster" / "sync.toml"
    assert "$HOME/.config/forecaster/sync.toml" in cron and "~/.config/forecaster/sync.toml" in dry
    cfg.parent.mkdir(parents=True)
    cfg.write_text(account["toml"])

    # step 2: the dry run forecasts and writes nothing
    res = _bash(_substitute(dry, account["uri"]), account)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[dry run] tiny-live" in res.stderr and "1 would forecast" in res.stdout and "0 writes" in res.stdout
    assert "forecast.status" not in client.get_run(rid).data.tags
    _no_secrets(res.stdout, res.stderr)

    # step 3: the crontab line, twice (the second tick finds nothing new); also without the dry run
    # before it, on an account where nothing ever made ~/.cache
    shutil.rmtree(home / ".cache", ignore_errors=True)
    line = _substitute(cron, account["uri"])
    (log_arg,) = re.findall(r"--log-file (\S+)", line)
    log = Path(log_arg.replace("$HOME", str(home)))
    assert home in log.parents and not log.parent.exists()
    outputs = []
    for _ in range(2):
        t0 = dt.datetime.now(dt.timezone.utc)
        res = _bash(line, account)
        t1 = dt.datetime.now(dt.timezone.utc)
        assert res.returncode == 0, res.stdout + res.stderr
        # cron mails whatever a job prints: a good sync prints nothing
        assert res.stdout == "" and res.stderr == "", res.stdout + res.stderr
        outputs.append((t0, t1))

    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines  # --quiet: one summary per sync, appended
    for (t0, t1), ln in zip(outputs, lines):
        m = STAMP.match(ln)
        assert m, ln
        when = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        assert when.tzinfo is not None and t0 - dt.timedelta(seconds=2) <= when <= t1 + dt.timedelta(seconds=2)
    assert "1 runs seen: 1 forecast," in lines[0] and "1 unchanged" in lines[1]
    _no_secrets(log.read_text())
    # the lock lives beside the log, in the folder the sync made
    assert list((home / ".cache" / "forecaster").glob("sync-*.lock"))
    # step 4: what the docs tell you to look for
    assert client.get_run(rid).data.tags["forecast.status"] == "ok"
    assert client.get_run(rid).info.status == "RUNNING"

