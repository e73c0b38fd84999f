"""How the MLflow UI draws forecasts: run colours, and the shared chart view that puts bands on a metric's chart.

The experiment's default chart view overlays a forecast run on its source's curve with no clicks.
The p10-p90 band keys would land in charts of their own there, so each experiment also gets one
shared chart view of ours (`band_view_state`), stored in the experiment tag `VIEW_TAG` and opened
with ``?viewStateShareKey=forecast-bands``, that draws them on the metric's own chart.
"""

from __future__ import annotations

import json
import zlib
from base64 import b64decode, b64encode
from collections.abc import Mapping, Sequence
from typing import Any

from forecaster.trackers import ForecastRevision
from forecaster_mlflow.client import MAX_TAG_VALUE

COLOR_TAG = "mlflow.runColor"  # the UI draws a run in this colour instead of one hashed from its id
KIND_TAG = "mlflow.experimentKind"  # MLflow 3 opens an experiment without it on the GenAI overview
KIND_TRAINING = "custom_model_development"
# A shared view lives in an experiment tag under this prefix and opens with ?viewStateShareKey=<key>.
# Views the UI's Share button writes are keyed by a hash, so a fixed word of ours cannot collide
# with them, and only this one tag is ever written or rewritten by the sync.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "forecast-bands"
VIEW_TAG = VIEW_TAG_PREFIX + VIEW_KEY
# The MLflow UI's run palette and hash (getStableColorForRun): a forecast takes its source's colour.
_PALETTE = ("#a6630c", "#c83243", "#b45091", "#8a63bf", "#434a93", "#137dae", "#04867d", "#308613", "#facb66",
            "#1f272d", "#445461", "#5f7281", "#8396a5", "#93320b", "#be501e", "#de7921", "#f2be88", "#115026",
            "#277c43", "#3ba65e", "#8ddda8", "#9e102c", "#c82d4c", "#e65b77", "#f792a6", "#0e538b", "#2272b4",
            "#4299e0", "#8acaff")


def run_color(run_id: str, tags: Mapping[str, str] | None = None) -> str:
    """The colour the MLflow UI draws a run in: its own ``mlflow.runColor`` tag, else a hash of its id."""
    if tags and tags.get(COLOR_TAG):
        return tags[COLOR_TAG]
    a = b = 0
    for ch in run_id:
        a = (a + ord(ch)) % 255
        b = (b + a) % 255
    return _PALETTE[(a | (b << 8)) % len(_PALETTE)]


def chart_view_path(experiment_id: str, band: bool = False) -> str:
    """The UI route of an experiment's training runs in chart view (MLflow 3; 2.x ignores the tab).

    With `band`, the route opens our shared view (`band_view_state`), which the experiment must hold.
    """
    path = f"#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
    return f"{path}&viewStateShareKey={VIEW_KEY}" if band else path


def _line_chart(uuid: str, section: str, key: str, keys: Sequence[str] | None = None,
                deleted: bool = False) -> dict[str, Any]:
    # Every field the UI's own line chart card carries: a shared state is merged with the page's
    # defaults field by field, not card by card, so a card must come complete.
    card = {"uuid": uuid, "type": "LINE", "metricSectionId": section, "deleted": deleted, "isGenerated": True,
            "metricKey": key, "displayName": key, "runsCountToCompare": 10, "lineSmoothness": 0,
            "scaleType": "linear", "xAxisScaleType": "linear", "xAxisKey": "step", "selectedXAxisMetricKey": "",
            "yAxisKey": "METRIC", "yAxisExpressions": [], "ignoreOutliers": False, "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
            "range": {}}
    if keys:
        card["selectedMetricKeys"] = list(keys)
    return card


def band_view_state(keys: Sequence[str]) -> dict[str, Any]:
    """The experiment page state of our shared view: each metric's chart also draws its band.

    A line chart in the MLflow UI draws every key in its ``selectedMetricKeys`` for every run, so
    the `loss` chart lists ``loss``, ``loss.p10`` and ``loss.p90``: real runs draw their loss,
    forecast runs their p50 and, dashed and dotted in the same colour, the band's edges. The UI
    adds a chart of its own for any metric no chart names as ``metricKey``, so ``loss.p10`` and
    ``loss.p90`` are named by deleted (hidden) cards; every other metric still gets its usual
    chart, after ours. All runs are shown: the UI's default (first 10 in the table) could hide a
    long-running run behind newer finished ones and its fresher forecast. A what-if key
    (``loss.if_cooldown_now``) is one more line on its metric's chart.
    """
    sections: dict[str, str] = {}
    charts: list[dict[str, Any]] = []
    # a what-if series (the run cooled down now) is drawn on its metric's chart, its band not at all
    whatifs: dict[str, list[str]] = {}
    for key in keys:
        base = ForecastRevision.whatif_of(key)
        if base is not None:
            whatifs.setdefault(base, []).append(key)
    for key in keys:
        if ForecastRevision.whatif_of(key) is not None:
            continue
        # the UI files a metric under the part of its name before the last "/" ("Model metrics": none)
        name = key.rsplit("/", 1)[0] if "/" in key else "Model metrics"
        section = sections.setdefault(name, f"forecast-section-{len(sections)}")
        lo, hi = ForecastRevision.band_keys(key)
        extra = whatifs.pop(key, [])
        charts += [_line_chart(f"forecast-chart-{key}", section, key, [key, lo, hi, *extra]),
                   _line_chart(f"forecast-chart-{lo}", section, lo, deleted=True),
                   _line_chart(f"forecast-chart-{hi}", section, hi, deleted=True)]
        for w in extra:  # hidden cards name them, so the UI adds no charts of their own
            charts += [_line_chart(f"forecast-chart-{k}", section, k, deleted=True)
                       for k in (w, *ForecastRevision.band_keys(w))]
    return {
        "compareRunCharts": charts,
        # one chart per row at a readable height; "reordered" makes the UI append the charts it
        # adds for other metrics after ours instead of sorting them in by name
        "compareRunSections": [{"uuid": uuid, "name": name, "display": True, "isReordered": True, "deleted": False,
                                "isGenerated": True, "columns": 1, "cardHeight": 520}
                               for name, uuid in sections.items()],
        "isAccordionReordered": False,
        "runsHiddenMode": "SHOW_ALL",
    }


def encode_view_state(state: Mapping[str, Any]) -> str:
    """A view state as the UI reads it from the tag: JSON, or deflated when JSON would not fit a tag."""
    text = json.dumps(state, separators=(",", ":"))
    if len(text) <= MAX_TAG_VALUE:
        return text
    return "deflate;" + b64encode(zlib.compress(text.encode(), 9)).decode()


def view_keys(value: str | None) -> frozenset[str]:
    """The metric keys a band view of ours draws (empty: no view, or not one we wrote)."""
    if not value:
        return frozenset()
    try:
        if value.startswith("deflate;"):
            value = zlib.decompress(b64decode(value[len("deflate;"):])).decode()
        charts = json.loads(value)["compareRunCharts"]
        ours = [c for c in charts if str(c.get("uuid", "")).startswith("forecast-chart-") and c.get("selectedMetricKeys")]
        return frozenset(c["metricKey"] for c in ours) | frozenset(
            k for c in ours for k in c["selectedMetricKeys"] if ForecastRevision.whatif_of(k) is not None)
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error):
        return frozenset()
