"""A new tracker is one installed package: a `Tracker` subclass registered under the
``forecaster.trackers`` entry-point group is found, offered to `forecast sync` and synced, with
nothing in forecaster edited. Also `forecast sync --tracker memory`, the in-memory tracker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from forecaster.cli import main
from forecaster.trackers.memory import MemoryStore
from tracker_harness import HF, hf_loss

REPO = Path(__file__).resolve().parents[1]

# A whole adapter package: the in-memory tracker under another name, its store seeded with one run
# (a store lives in its process, and the sync below runs in a process of its own).
_PACKAGE = '''
    from forecaster.trackers.memory import MemoryStore, MemoryTracker

    STEPS = list(range(20, 401, 20))
    LOSS = {loss!r}
    HF = {hf!r}


    class ToyTracker(MemoryTracker):
        name = "toy"

        def __init__(self, **kw):
            store = MemoryStore.named("toy")
            if not store.runs:
                store.log_run("exp", "live", {{"loss": (STEPS, LOSS)}}, config=HF)
            super().__init__(store=store, **kw)
'''

_ENTRY_POINTS = "[forecaster.trackers]\ntoy = forecaster_toy:ToyTracker\n"


def _install_toy(root: Path) -> None:
    """What `pip install forecaster-toy` leaves in site-packages: the package and its dist-info."""
    pkg = root / "forecaster_toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(_PACKAGE.format(loss=hf_loss(400, 1)[1], hf=HF)))
    info = root / "forecaster_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forecaster-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(_ENTRY_POINTS)


def _run(root: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300, cwd=root)


def test_a_new_tracker_package_is_found_and_synced_with_nothing_else_edited(tmp_path) -> None:
    _install_toy(tmp_path)
    found = _run(tmp_path, "from forecaster import trackers; cls = trackers.load('toy'); "
                           "print(sorted(trackers.available()), cls.__module__, cls.name)")
    assert found.returncode == 0, found.stderr[-2000:]
    assert "'toy'" in found.stdout and "forecaster_toy toy" in found.stdout

    cli = ("import sys; from forecaster.cli import main; from forecaster.trackers.memory import MemoryStore\n"
           "sys.argv[0] = 'forecast'\n"
           "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
           "store = MemoryStore.named('toy')\n"
           "print('forecast runs:', sum(1 for r in store.runs.values() if r.source), 'exit', code)\n")
    synced = _run(tmp_path, cli, "sync", "--tracker", "toy", "--experiment", "exp", "--law", "multipower",
                  "--no-plots", "--lock-file", str(tmp_path / "lock"), "--no-cache")
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert "1 runs seen: 1 forecast" in synced.stdout + synced.stderr
    assert "forecast runs: 1 exit 0" in synced.stdout


def test_sync_with_the_in_memory_tracker_from_the_command_line(tmp_path) -> None:
    store = MemoryStore.named(f"memory://{tmp_path.name}")
    steps, loss = hf_loss(400, 1)
    rid = store.log_run("exp", "live", {"loss": (steps, loss)}, config=HF)
    args = ["sync", "--tracker", "memory", "--tracking-uri", f"memory://{tmp_path.name}", "--experiment", "exp",
            "--law", "multipower", "--no-plots", "--lock-file", str(tmp_path / "lock"), "--no-cache"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "1 runs seen: 1 forecast" in res.output
    (fc,) = store.forecasts_of(rid)
    assert store.runs[rid].tags["forecast.run_id"] == fc.id and fc.metrics["loss"][-1][0] == 1000
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert "1 unchanged" in res.output and len(store.forecasts_of(rid)) == 1
