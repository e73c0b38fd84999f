"""The tracker interface, its records, and how adapters are found (see `base` for the interface).

    base         the `Tracker` interface every adapter implements, and `TrackerOption`
    records      RunInfo, Watermark, ForecastRevision, SummaryRevision and the run states
    series       a metric history (`Series`), `clean_series` and `thin`
    registry     adapters by name from the ``forecaster.trackers`` entry-point group
    uri          `canonical_uri`: one spelling of a tracker address
    fingerprint  the hash naming a forecast's inputs
    memory       a tracker held in memory (tests, examples, a base for new adapters' tests)
"""

from __future__ import annotations

from forecaster import tags
from forecaster.errors import InputError, RunGone, TrackerError
from forecaster.trackers.base import Tracker, TrackerOption
from forecaster.trackers.fingerprint import fingerprint
from forecaster.trackers.records import (
    FAILED, FINISHED, KILLED, RUNNING, STATES, ForecastRevision, RunInfo, SummaryRevision, Watermark,
)
from forecaster.trackers.registry import ENTRY_POINT_GROUP, available, load
from forecaster.trackers.series import Series, clean_series, thin
from forecaster.trackers.uri import canonical_uri

# aliases of forecaster.tags keys for the modules that still import them from here
TAG_PREFIX = tags.PREFIX
TAG_KIND = tags.KIND
KIND_SCALING = tags.KIND_SCALING
TAG_SOURCE = tags.SOURCE
LEGACY_TAG_SOURCE = tags.LEGACY_SOURCE
TAG_RUN_ID = tags.RUN_ID
TAG_INPUT = tags.INPUT
KIND_FORECAST = tags.KIND_FORECAST
TAG_STOP = tags.STOP

__all__ = [
    "ENTRY_POINT_GROUP", "RUNNING", "FINISHED", "FAILED", "KILLED", "STATES", "TAG_PREFIX", "TAG_KIND",
    "KIND_SCALING", "TAG_SOURCE", "LEGACY_TAG_SOURCE", "TAG_RUN_ID", "TAG_INPUT", "TAG_STOP", "KIND_FORECAST",
    "InputError", "TrackerError", "RunGone", "Watermark", "RunInfo", "Series", "clean_series", "ForecastRevision",
    "SummaryRevision", "thin", "TrackerOption", "Tracker", "available", "load", "fingerprint", "canonical_uri",
]
