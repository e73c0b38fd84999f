"""The offline W&B tracker (``--wandb-dir DIR``): offline run folders in, offline companion runs out.

Runs come from the ``offline-run-*`` transaction logs (read-only, `offline_runs`); companions and
summary runs are written as offline runs beside them for ``wandb sync`` to upload later; the source
annotations live in a small state file in DIR, since the user's run files must not change.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from forecaster.errors import InputError, RunGone, TrackerError
from forecaster.tags import KIND_FORECAST, STOP
from forecaster.trackers import (
    FAILED,
    FINISHED,
    RUNNING,
    ForecastRevision,
    RunInfo,
    Series,
    SummaryRevision,
    Watermark,
    clean_series,
)
from forecaster_wandb.core import (
    COMPLETE,
    JOB_TYPE,
    Rows,
    companion_id,
    forecast_config,
    is_summary,
    own_summary_tags,
    summary_id,
)
from forecaster_wandb.errors import message
from forecaster_wandb.offline_runs import OFFLINE_PREFIX, OfflineRun, read_dir, read_run, run_dirs
from forecaster_wandb.tracker import WandbTracker

log = logging.getLogger(__name__)
STATE_FILE = "forecaster-state.json"  # source annotations (user runs stay untouched)
OFFSETS_FILE = "forecaster-offsets.json"  # each log parsed so far, to parse only what was appended


class OfflineWandbTracker(WandbTracker):
    """The offline runs of one wandb folder; what is written goes there too, for ``wandb sync``."""

    summary_base_url = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.wandb_dir is None:
            raise InputError("the offline W&B tracker needs --wandb-dir DIR")
        self.dir: Path = self.wandb_dir
        self._runs: dict[str, OfflineRun] = {}  # source id / "companion:" / "summary:" + id -> run
        self._write_lock = threading.Lock()  # one scratch folder at a time next to the user's runs

    def describe(self) -> str:
        return f"wandb offline {self.dir}"

    def identity(self) -> list[str]:
        """The resolved wandb folder."""
        return [f"wandb|offline|{self.dir.resolve()}"]

    # -- reading ----------------------------------------------------------------------------------
    def list_runs(self) -> list[RunInfo]:
        memo = self._load_offsets()
        runs, bad = read_dir(self.dir, memo)
        self._save_offsets(memo)
        self.unreadable = bad  # for the engine's report, if it looks
        state = self._load_state()
        companions: dict[str, list[tuple[str, str]]] = {}
        sources = []
        self._runs = {}
        summaries = []
        for r in runs:
            block = forecast_config(r.config)
            if is_summary(r.job_type, r.config):
                self._runs["summary:" + r.id] = r
                summaries.append(RunInfo(
                    id=r.id, name=r.name or r.id, scope=self._scope(r), status=_status(r),
                    tags=own_summary_tags(r.job_type, r.summary), extra={"dir": str(r.dir)}))
                continue
            if r.job_type == JOB_TYPE or block.get("kind") == KIND_FORECAST:
                if r.exit_code == 0 and block.get("source"):
                    companions.setdefault(str(block["source"]), []).append((r.dir.name, r.id))
                    self._runs["companion:" + r.id] = r
                continue
            sources.append(r)
        infos = []
        for r in sources:
            self._runs[r.id] = r
            latest = {}
            for key, (steps, values) in r.series.items():
                if steps:
                    latest[key] = Watermark(step=int(r.last_step), timestamp=len(steps), value=float(values[-1]))
            infos.append(RunInfo(
                id=r.id, name=r.name or r.id, scope=self._scope(r), status=_status(r),
                latest=latest, config=dict(r.config), tags=dict(state.get(r.id, {})),
                forecasts=[cid for _, cid in sorted(companions.get(r.id, []))],
                url=None, extra={"dir": str(r.dir), "wandb_tags": list(r.tags), "group": r.group,
                                 "last_step": r.last_step, "history_keys": sorted(r.series)}))
        return infos + summaries

    def _scope(self, r: OfflineRun) -> str:
        return f"{r.entity}/{r.project}" if r.entity or r.project else str(self.dir)

    def read_histories(self, runs: Sequence[RunInfo], keys: Sequence[str]
                       ) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        for run in runs:
            yield run, self._histories(run, keys)

    def read_since(self, runs: Sequence[RunInfo], since: Mapping[str, Mapping[str, int | None]],
                   max_points: int | None = None) -> Iterator[tuple[RunInfo, dict[str, Series] | RunGone]]:
        """Tails of histories, cut from the log (exact points)."""
        for run in runs:
            want = since.get(run.id, {})
            got = self._histories(run, list(want))
            if isinstance(got, RunGone):
                yield run, got
                continue
            yield run, {k: s if want[k] is None else Series(s.steps[s.steps >= want[k]], s.values[s.steps >= want[k]])
                        for k, s in got.items()}

    def _histories(self, run: RunInfo, keys: Sequence[str]) -> dict[str, Series] | RunGone:
        r = self._runs.get(run.id)
        if r is None or not Path(r.file).exists():
            return RunGone(f"offline run {run.label} disappeared during the sync")
        out = {}
        for key in keys:
            if key in r.series:
                steps, values = r.history(key)
                out[key] = clean_series(steps, values)
        return out

    # -- writing ----------------------------------------------------------------------------------
    def _create_forecast(self, revision: ForecastRevision, rows: Rows) -> str:
        src = revision.source
        cid = companion_id(src.scope, src.id, revision.input)
        with self._write_lock:
            for d in run_dirs(self.dir):
                if d.name.endswith("-" + cid):
                    done = read_run(d)
                    if done.exit_code == 0 and forecast_config(done.config).get("input") == revision.input:
                        return cid
                    shutil.rmtree(d)  # a half-written companion of ours: write it again
            self._write_run(
                self._init_kwargs(revision, cid), lambda run: self._write(run, revision, rows),
                lambda check: bool(check.series), f"offline companion {cid} of {src.label}",
                f"the offline forecast of {src.label}")
        return cid

    def _create_summary(self, revision: SummaryRevision) -> str:
        """The summary run as one more offline run in DIR (scratch folder, renamed in once complete)."""
        sid = summary_id(revision.scope, revision.kind, revision.input)
        with self._write_lock:
            for d in run_dirs(self.dir):
                if d.name.endswith("-" + sid):
                    done = read_run(d)
                    if not is_summary(done.job_type, done.config):
                        raise InputError(f"{d} holds run id {sid} but is not a forecaster summary run")
                    if done.exit_code == 0 and (done.summary.get("forecast") or {}).get(COMPLETE) is True:
                        return sid
                    shutil.rmtree(d)  # a half-written summary run of ours: write it again
            self._write_run(
                self._summary_init_kwargs(revision, sid), lambda run: self._write_summary(run, revision),
                lambda check: (check.summary.get("forecast") or {}).get(COMPLETE) is True,
                f"offline summary run {sid} of {revision.scope}", f"the offline summary run of {revision.scope}")
        return sid

    def _write_run(self, init_kwargs: dict[str, Any], write: Callable[[Any], None],
                   complete: Callable[[OfflineRun], bool], name: str, what: str) -> None:
        """Write one offline run and move it into DIR only once it reads back complete."""
        import wandb

        # Written in a scratch folder inside DIR, then renamed in: the user's `latest-run` and
        # debug-log links stay as they were, and a crash never leaves a half run among theirs.
        scratch = Path(tempfile.mkdtemp(prefix=".forecaster-", dir=self.dir))
        run = None
        try:
            run = wandb.init(mode="offline", dir=str(scratch), **init_kwargs)
            write(run)
            run.finish(exit_code=0)
            run = None
            made = [d for d in (scratch / "wandb").iterdir() if d.name.startswith(OFFLINE_PREFIX)]
            if len(made) != 1:
                raise TrackerError(f"wandb wrote {len(made)} offline runs for {name}")
            check = _settled(made[0])
            if check.exit_code != 0 or not complete(check):
                raise TrackerError(f"{name} was not written completely")
            os.rename(made[0], self.dir / made[0].name)
        except Exception as err:  # noqa: BLE001
            if run is not None:
                try:
                    run.finish(exit_code=1)
                except Exception:  # noqa: BLE001
                    pass
            if isinstance(err, (TrackerError, InputError)):
                raise
            raise TrackerError(f"writing {what} failed: {message(err)}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _set_tags(self, run: RunInfo, tags: Mapping[str, str | None]) -> None:
        state = self._load_state()
        entry = dict(state.get(run.id, {}))
        for k, v in tags.items():
            if v is None:  # the engine's way of removing a tag
                entry.pop(k, None)
            else:
                entry[k] = str(v)
        state[run.id] = entry
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".forecaster-state-")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.dir / STATE_FILE)

    def stop_run(self, run: RunInfo) -> str:
        """Offline runs have no server to ask: the engine's annotation is all, and a line says so."""
        return (f"offline W&B run {run.label} cannot be stopped remotely: annotated {STOP}=true "
                "(stop the training process yourself)")

    def delete_forecast(self, run: RunInfo, forecast_id: str) -> None:
        for d in run_dirs(self.dir):
            if not d.name.endswith("-" + forecast_id):
                continue
            r = read_run(d)
            block = forecast_config(r.config)
            if r.job_type != JOB_TYPE or block.get("source") != run.id:
                raise InputError(f"refusing to delete {d}: it is not a forecast companion of {run.label}")
            shutil.rmtree(d)

    def delete_summary(self, summary: RunInfo) -> None:
        for d in run_dirs(self.dir):
            if not d.name.endswith("-" + summary.id):
                continue
            r = read_run(d)
            if not is_summary(r.job_type, r.config):
                raise InputError(f"refusing to delete {d}: it is not a forecaster summary run")
            shutil.rmtree(d)

    # -- files of ours in DIR ---------------------------------------------------------------------
    def _load_offsets(self) -> dict[str, Any]:
        """The parse of each offline log so far and the byte offset reached (see offline_runs.read_dir)."""
        try:
            data = json.loads((self.dir / OFFSETS_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:  # only costs a full parse; rewritten below
            log.warning("%s is unreadable (%s): parsing every offline log from the start", self.dir / OFFSETS_FILE, e)
            return {}
        return data if isinstance(data, dict) and data.get("version") == 1 else {}

    def _save_offsets(self, memo: dict[str, Any]) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".forecaster-offsets-")
            with os.fdopen(fd, "w") as f:
                json.dump({**memo, "version": 1}, f)
            os.replace(tmp, self.dir / OFFSETS_FILE)
        except OSError as e:  # a read-only wandb folder: every sync parses the logs in full
            log.debug("cannot save %s: %s", OFFSETS_FILE, e)

    def _load_state(self) -> dict[str, dict[str, str]]:
        path = self.dir / STATE_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InputError(f"{path} is not readable JSON; delete it to start the offline state afresh") from None
        return data if isinstance(data, dict) else {}


def _status(r: OfflineRun) -> str:
    return RUNNING if r.exit_code is None else (FINISHED if r.exit_code == 0 else FAILED)


def _settled(run_dir: Path, timeout: float = 30.0) -> OfflineRun:
    """Read an offline run once wandb-core has flushed its exit record (finish() may return first)."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(run_dir)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.05)
