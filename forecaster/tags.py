"""Every `forecast.*` key the engine and the adapters write or read back, in one place.

Adapters must round-trip these through `RunInfo.tags` (W&B keeps them in the run summary). Keys of
a secondary metric `m` are the primary's with `forecast.{m}.` in place of `forecast.` (see `metric_key`).
"""

from __future__ import annotations

PREFIX = "forecast."

# -- on forecast (companion) runs --------------------------------------------------------------
KIND = "forecast.kind"  # KIND_FORECAST on forecast runs, KIND_SCALING on an experiment's scaling summary
KIND_FORECAST = "forecast"
KIND_SCALING = "scaling"
SOURCE = "forecast.source_run"  # the source run's id
LEGACY_SOURCE = "forecast.source"  # what forecasts written by earlier versions carry instead of SOURCE

# -- on source runs ----------------------------------------------------------------------------
RUN_ID = "forecast.run_id"  # the live forecast run
INPUT = "forecast.input"  # fingerprint of what the last forecast was made from
STOP = "forecast.stop_requested"  # "true" once a stop was requested (asked once)
STATUS = "forecast.status"  # "ok" once a forecast was written
STATUS_OK = "ok"  # the STATUS value once a forecast was written
STATUS_SKIPPED = "skipped"  # the STATUS value while SKIPPED says why there is no forecast
SKIPPED = "forecast.skipped"  # why a run got no forecast this sync
WATERMARK = "forecast.watermark"  # the last step read per metric
NOTES = "forecast.notes"  # what screening dropped or changed
ALERT_RETRY = "forecast.alert_retry"  # set while an alert's webhook failed: refit next sync to retry it
METRIC = "forecast.metric"
FINAL = "forecast.final"
FINAL_P10 = "forecast.final_p10"
FINAL_P90 = "forecast.final_p90"
FINAL_STEP = "forecast.final_step"
ETA_STEP = "forecast.eta_step"
LAW = "forecast.law"
UPDATED = "forecast.updated"
VERSION = "forecast.version"
SCHEDULE = "forecast.schedule"  # a user's own schedule spec for the run (read, never written)
SCHEDULE_USED = "forecast.schedule_used"
# "cooling down now" for a run at constant LR (forecaster.advisor): final with band, cooldown length
IF_COOLDOWN_NOW_FINAL = "forecast.if_cooldown_now.final"
IF_COOLDOWN_NOW_P10 = "forecast.if_cooldown_now.p10"
IF_COOLDOWN_NOW_P90 = "forecast.if_cooldown_now.p90"
IF_COOLDOWN_NOW_LENGTH = "forecast.if_cooldown_now.length"
IF_COOLDOWN_NOW_NOTE = "forecast.if_cooldown_now.note"  # set while the response to a decay is not identified
IF_COOLDOWN_NOW = (IF_COOLDOWN_NOW_FINAL, IF_COOLDOWN_NOW_P10, IF_COOLDOWN_NOW_P90, IF_COOLDOWN_NOW_LENGTH,
                   IF_COOLDOWN_NOW_NOTE)

# -- alerts ------------------------------------------------------------------------------------
ALERT_PREFIX = "forecast.alert."  # forecast.alert.<rule> = "ok" | "<state>: <message>"
ALERT_HASH_PREFIX = "forecast.alert_hash."
ALERTS = "forecast.alerts"  # summary of the firing rules
SILENCE = "forecast.silence"

# -- the scaling summary run -------------------------------------------------------------------
SCALING_PREFIX = "forecast.scaling."
SCALING_LAW = "forecast.scaling.law"
SCALING_LEVEL = "forecast.scaling.level"
SCALING_NOTES = "forecast.scaling.notes"


def metric_key(key: str, metric: str, primary: str) -> str:
    """The tag `key` (a `forecast.*` constant) for `metric`: as is for the primary metric."""
    return key if metric == primary else f"{PREFIX}{metric}.{key[len(PREFIX):]}"
