"""`forecast sync`: forecast every run of a tracker's experiments and write the forecasts back.

The engine (`engine.sync`) runs named steps over plain dataclasses: list -> `plan` -> `read` ->
`fitting` -> `alerting` -> `writer`, reported through `report`; `lock` keeps cron invocations apart,
`settings` holds what to do, `cli` is the command.
"""

from __future__ import annotations

from forecaster.errors import LockBusy
from forecaster.sync.engine import Listing, list_runs, sync
from forecaster.sync.lock import default_lock_path, exclusive_lock, exclusive_locks
from forecaster.sync.plan import Plan, group_of, horizon, plan_run, run_config, triage
from forecaster.sync.read import build_history
from forecaster.sync.report import Action, RunOutcome, Skip, SkipKind, SyncReport
from forecaster.sync.settings import HISTORY_SAMPLE, KEEP_SHARE, SyncSettings

__all__ = [
    "HISTORY_SAMPLE", "KEEP_SHARE", "Action", "Listing", "LockBusy", "Plan", "RunOutcome", "Skip", "SkipKind",
    "SyncReport", "SyncSettings", "build_history", "default_lock_path", "exclusive_lock", "exclusive_locks",
    "group_of", "horizon", "list_runs", "plan_run", "run_config", "sync", "triage",
]
