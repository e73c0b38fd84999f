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

from forecaster.errors import InputError, RunGone, TrackerError
from forecaster.trackers.base import Tracker, TrackerOption
from forecaster.trackers.fingerprint import fingerprint
from forecaster.trackers.records import (
    FAILED, FINISHED, KILLED, RUNNING, STATES, ForecastRevision, RunInfo, SummaryRevision, Watermark,
)
from forecaster.trackers.registry import ENTRY_POINT_GROUP, available, load
from forecaster.trackers.series import Series, clean_series, thin
from forecaster.trackers.uri import canonical_uri

__all__ = [
    "ENTRY_POINT_GROUP", "RUNNING", "FINISHED", "FAILED", "KILLED", "STATES", "InputError", "TrackerError",
    "RunGone", "Watermark", "RunInfo", "Series", "clean_series", "ForecastRevision", "SummaryRevision", "thin",
    "TrackerOption", "Tracker", "available", "load", "fingerprint", "canonical_uri",
]
